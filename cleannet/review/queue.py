"""The verification queue: which samples a person should verify next, and its file.

Selection (`select_queue`), among the samples not verified yet:
1. within each class, the samples are ranked by certainty (cleannet.review.decision_used:
   the distance of the score from the decision's cut), least certain first;
2. the queue is filled in rounds: each round takes the next UNVERIFIED_PICKS samples of
   every class without verification labels and the next one of every other class, the
   least certain first within the round; it stops at N samples.
So the queue spreads over the classes, favours the classes without verification labels
(which the model knows only through their reference sets) and, in each class, asks about
the verdicts a small change could flip. Its first sample is the least certain of all.

A variant, given the verdicts (`verdict`; util/report.py does not pass them): each class's
picks also keep to the class's share p of "label wrong" verdicts over all its samples;
pick k is the least certain sample left among the sides of the cut still under their
quota, ceil((k + 1)·p) picks judged wrong and ceil((k + 1)·(1 - p)) judged right. It
was meant to keep a class's verified samples from being mostly wrongly labelled; on the
digits demo it helped the retrained model less than the plain order (docs/decisions.md,
"Which samples to verify next"; bench/bench_queue.py measures both).

The file (queue.tsv) has the verified list layout of docs/pipeline.md, no header:
    key<TAB>image_path<TAB>class_name<TAB>vlabel
with vlabel empty for a person (or the review page) to fill with 1 (label correct) or 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from noisylabels.errors import InputError
from noisylabels.fileio import iter_text_lines
from noisylabels.unique_keys import UniqueKeys

UNVERIFIED_PICKS = 3  # samples per round from a class without verification labels (others: 1)
QUEUE_VLABELS = ("1", "0", "")


def select_queue(label: np.ndarray, certainty: np.ndarray, count: int, verified_classes: set[int] | None,
                 exclude: np.ndarray | None = None, verdict: np.ndarray | None = None) -> np.ndarray:
    """Indices of the `count` samples to verify next, in queue order (module docstring).

    Args:
      label: int [n] class ids.
      certainty: float [n], >= 0, small = uncertain.
      count: N, the queue length (fewer when fewer samples are eligible).
      verified_classes: ids of classes with verification labels (None: none known).
      exclude: bool [n], True for samples that must not be queued (already verified).
      verdict: int [n], 1 = label judged correct, 0 = wrong; given, the side-quota variant
        (module docstring); None (util/report.py), the plain order.

    Returns:
      int64 [min(N, eligible)].
    """
    label = np.asarray(label, np.int64)
    certainty = np.asarray(certainty, np.float64)
    eligible = np.ones(len(label), bool) if exclude is None else ~np.asarray(exclude, bool)
    index = np.flatnonzero(eligible)
    order = index[np.lexsort((index, certainty[index], label[index]))]  # by class, then least certain
    sorted_labels = label[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(len(order)) - starts  # 0 = least certain of its class
    if verdict is not None:
        rank = side_balanced_rank(order, sorted_labels, label, np.asarray(verdict) == 0, count)
    verified = np.zeros(int(label.max(initial=0)) + 1, bool)
    if verified_classes:
        verified[[c for c in verified_classes if c < len(verified)]] = True
    picks = np.where(verified[sorted_labels], 1, UNVERIFIED_PICKS)
    round_of = rank // picks
    queue_order = np.lexsort((order, certainty[order], round_of))
    return order[queue_order][:count]


def side_balanced_rank(order: np.ndarray, sorted_labels: np.ndarray, label: np.ndarray, judged_wrong: np.ndarray,
                       limit: int) -> np.ndarray:
    """Positions within their class of the eligible samples when each class's picks keep to
    its share of "wrong" verdicts (module docstring).

    Args:
      order: int [m], eligible sample indices sorted by class, then least certain first.
      sorted_labels: int [m], label[order].
      label: int [n]; judged_wrong: bool [n], verdict 0 (of every sample, eligible or not).
      limit: picks placed per class (N); later samples keep their order after them.

    Returns:
      int64 [m], the position of order[i] among its class's picks. Pick k of a class
      (k = 0, 1, ...) is the least certain sample left among the sides still under their
      quota: "wrong" while the wrong picks so far are < ceil((k + 1)·p), "right" while the
      right ones are < ceil((k + 1)·(1 - p)), p = the share of the class's samples judged
      wrong; when a side runs out, the other.
    """
    num_classes = int(label.max(initial=0)) + 1
    share = np.bincount(label, weights=judged_wrong, minlength=num_classes) / np.maximum(
        np.bincount(label, minlength=num_classes), 1)
    wrong = judged_wrong[order]
    position = np.empty(len(order), np.int64)
    for c in np.unique(sorted_labels):
        block = np.flatnonzero(sorted_labels == c)  # least certain first
        sides = {True: list(block[wrong[block]][::-1]), False: list(block[~wrong[block]][::-1])}  # pop() = next
        quota = {True: share[c], False: 1.0 - share[c]}
        taken = {True: 0, False: 0}
        for k in range(min(len(block), limit)):
            open_sides = [side for side in (True, False) if sides[side]
                          and (taken[side] < np.ceil((k + 1) * quota[side] - 1e-9) or not sides[not side])]
            side = min(open_sides, key=lambda side: sides[side][-1])  # the least certain (earlier in block)
            position[sides[side].pop()] = k
            taken[side] += 1
        rest = sorted(sides[True] + sides[False])
        position[rest] = limit + np.arange(len(rest))
    return position


@dataclasses.dataclass
class QueueRow:
    """One row of a (filled) queue file."""

    line: int
    key: str
    image_path: str
    class_name: str
    vlabel: str  # "1", "0" or "" (not filled)


def format_queue(keys: Sequence[str], image_paths: Sequence[str], class_names: Sequence[str],
                 vlabels: Sequence[str] | None = None) -> str:
    """The queue file's text: one `key, image_path, class_name, vlabel` line per sample."""
    vlabels = [""] * len(keys) if vlabels is None else vlabels
    return "".join("%s\t%s\t%s\t%s\n" % row for row in zip(keys, image_paths, class_names, vlabels))


def read_queue(path: str) -> list[QueueRow]:
    """The rows of a queue file; InputError (path:line, field) for a malformed row, a vlabel
    other than 1, 0 or empty, or a duplicate key."""
    rows, seen = [], UniqueKeys(path)
    for line, text in iter_text_lines(path, field="--queue"):
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 4:
            raise InputError("expected 4 tab-separated columns (key, image_path, class_name, vlabel), found %d"
                             % len(fields), path=path, line=line)
        key, image_path, class_name, vlabel = fields
        vlabel = vlabel.strip()
        if not key:
            raise InputError("empty key", path=path, line=line, field="key")
        if vlabel not in QUEUE_VLABELS:
            raise InputError("expected 1 (label correct), 0 (label wrong) or empty, found %r" % vlabel[:40],
                             path=path, line=line, field="vlabel")
        seen.add(key, line)
        rows.append(QueueRow(line, key, image_path, class_name, vlabel))
    if not rows:
        raise InputError("no rows (the queue is empty)", path=path)
    return rows
