"""The verification queue: which samples a person should verify next, and its file.

Selection (`select_queue`), among the samples not verified yet:
1. within each class, the samples are ranked by certainty (cleannet.review.decision_used:
   the distance of the score from the decision's cut), least certain first;
2. the queue is filled in rounds: each round takes the next UNVERIFIED_PICKS samples of
   every class without verification labels and the next one of every other class, the
   least certain first within the round; it stops at N samples.
So the queue spreads over the classes, favours the classes without verification labels
(which the model knows only through their reference sets) and, in each class, asks about
the verdicts a small change could flip.

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
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the `count` samples to verify next, in queue order (module docstring).

    Args:
      label: int [n] class ids.
      certainty: float [n], >= 0, small = uncertain.
      count: N, the queue length (fewer when fewer samples are eligible).
      verified_classes: ids of classes with verification labels (None: none known).
      exclude: bool [n], True for samples that must not be queued (already verified).

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
    verified = np.zeros(int(label.max(initial=0)) + 1, bool)
    if verified_classes:
        verified[[c for c in verified_classes if c < len(verified)]] = True
    picks = np.where(verified[sorted_labels], 1, UNVERIFIED_PICKS)
    round_of = rank // picks
    queue_order = np.lexsort((order, certainty[order], round_of))
    return order[queue_order][:count]


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
