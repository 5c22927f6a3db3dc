"""The numbers of the review page: noise per class, label -> suggested-class confusions,
which classes have verification labels.

The estimated share of wrong labels is the share of samples judged wrong (verdict 0) by the
decision that made the verdicts; its quality is that decision's (see the calibration's
validation error on the page).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from noisylabels.errors import InputError
from noisylabels.fileio import iter_text_lines


@dataclasses.dataclass
class ClassRow:
    """One class of the per-class table."""

    class_id: int
    name: str
    samples: int
    judged_wrong: int
    verified: bool | None  # None: unknown (no --verified_list)

    @property
    def noise(self) -> float:
        return self.judged_wrong / self.samples if self.samples else 0.0


def class_rows(predictions, verified_classes: set[int] | None) -> list[ClassRow]:
    """One ClassRow per class of the class list (classes without samples included)."""
    count = len(predictions.class_names)
    samples = np.bincount(predictions.label, minlength=count)
    wrong = np.bincount(predictions.label[predictions.verdict == 0], minlength=count)
    return [ClassRow(c, predictions.class_names[c], int(samples[c]), int(wrong[c]),
                     None if verified_classes is None else c in verified_classes) for c in range(count)]


def confusions(predictions, top: int = 20) -> list[tuple[str, str, int]]:
    """The `top` most frequent (label, suggested class, count) pairs, most frequent first."""
    has = predictions.suggested >= 0
    if not has.any():
        return []
    count = len(predictions.class_names)
    pairs = predictions.label[has].astype(np.int64) * count + predictions.suggested[has]
    values, counts = np.unique(pairs, return_counts=True)
    order = np.lexsort((values, -counts))[:top]
    return [(predictions.class_names[values[i] // count], predictions.class_names[values[i] % count],
             int(counts[i])) for i in order]


def _class_column(fields):
    """The class name of a verified row: image list (key, path, class, vlabel) or verified TSV
    (key, [url,] class, vlabel, feature); (class, vlabel) or None for another layout."""
    if len(fields) == 5:
        return fields[2], fields[3]
    if len(fields) == 4:
        if fields[3].strip() in ("1", "0", "-1"):
            return fields[2], fields[3].strip()
        return fields[1], fields[2].strip()
    return None


def read_verified(path: str, class_names: Sequence[str]) -> tuple[set[int], set[str]]:
    """(ids of the classes with at least one verification label (vlabel 0 or 1), every key) of `path`.

    Args:
      path: the verified image list (key, image_path, class_name, vlabel) or the verified
        TSV train.py's data came from (key, [url,] class_name, vlabel, feature).
      class_names: the class list.
    """
    class_ids = {name: i for i, name in enumerate(class_names)}
    verified, keys = set(), set()
    for line, text in iter_text_lines(path, field="--verified_list", max_line_bytes=1 << 26):
        if not text.strip():
            continue
        found = _class_column(text.split("\t", 4))
        if found is None:
            raise InputError("expected a verified list (key, image_path, class_name, vlabel) or a verified TSV "
                             "(key, [url,] class_name, vlabel, feature)", path=path, line=line)
        name, vlabel = found
        if name not in class_ids:
            raise InputError("class %r is not in the class list" % name, path=path, line=line, field="class_name")
        if vlabel in ("0", "1"):
            verified.add(class_ids[name])
        keys.add(text.split("\t", 1)[0])
    return verified, keys
