"""inference.py's tsv / jsonl output read into columns, checked against the class list.

The columns used (found by their header names; others are ignored):
  key, url, class_name, similarity, verdict                        (always)
  best_other_class, best_other_similarity, margin, suggested_class (with cross-class scores)
  class_score                                                      (when present: the class
                                                                    score the margin used)
A class name that is not in the class list (label, best other or suggested class), a
duplicate key, a non-finite number or a verdict other than 0/1 is an InputError naming
the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from cleannet.tools.make_cleaned_list import _iter_prediction_values, _prediction
from noisylabels.errors import InputError
from noisylabels.unique_keys import UniqueKeys


@dataclasses.dataclass
class Predictions:
    """One entry per scored sample, in file order (n samples, C classes).

    Attributes:
      path: the predictions file.
      keys, urls: list of n str (url "" when absent).
      lines: int64 [n], 1-based line of each sample in the file.
      label: int32 [n], class id of the (possibly wrong) label.
      similarity: float64 [n], cosine of the sample and its labelled class.
      verdict: int8 [n], 1 = label judged correct.
      margin: float64 [n], own class score minus the best other's; nan when absent.
      best_other: int32 [n], best other class id; -1 when absent.
      suggested: int32 [n], suggested class id; -1 when none.
      class_names: the C class names.
      class_score: the class_score column's value when it is one name for every row, else None.
    """

    path: str
    keys: list
    urls: list
    lines: np.ndarray
    label: np.ndarray
    similarity: np.ndarray
    verdict: np.ndarray
    margin: np.ndarray
    best_other: np.ndarray
    suggested: np.ndarray
    class_names: list
    class_score: str | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def has_margin(self) -> bool:
        return bool(np.isfinite(self.margin).any())


def _class_id(value, class_ids, path, line, field, optional):
    """The id of class name `value`; -1 for an empty optional one; InputError if unknown."""
    if value in (None, "") and optional:
        return -1
    if value not in class_ids:
        raise InputError("class %r is not in the class list (the predictions do not match --class_list)"
                         % (value,), path=path, line=line, field=field)
    return class_ids[value]


def _optional_number(value, path, line, field):
    """float(value); nan for empty / None; InputError for text or a non-finite number."""
    if value in (None, ""):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError("not a number: %r" % (value,), path=path, line=line, field=field) from None
    if not math.isfinite(number):
        raise InputError("not a finite number", path=path, line=line, field=field)
    return number


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_predictions(path: str, class_names: Sequence[str]) -> Predictions:
    """Reads inference.py's tsv or jsonl output (module docstring)."""
    class_ids = {name: i for i, name in enumerate(class_names)}
    seen = UniqueKeys(path)
    columns = {name: [] for name in ("keys", "urls", "lines", "label", "similarity", "verdict", "margin",
                                     "best_other", "suggested")}
    class_scores = set()
    for line, values in _iter_prediction_values(path):
        checked = _prediction(values, path, line)
        key = str(values["key"])
        seen.add(key, line)
        columns["keys"].append(key)
        columns["urls"].append(str(values.get("url") or ""))
        columns["lines"].append(line)
        columns["label"].append(_class_id(checked.class_name, class_ids, path, line, "class_name", False))
        columns["similarity"].append(checked.similarity)
        columns["verdict"].append(checked.verdict)
        columns["margin"].append(_optional_number(values.get("margin"), path, line, "margin"))
        columns["best_other"].append(_class_id(values.get("best_other_class"), class_ids, path, line,
                                               "best_other_class", True))
        columns["suggested"].append(_class_id(values.get("suggested_class"), class_ids, path, line,
                                              "suggested_class", True))
        class_scores.add(values.get("class_score"))
    if not columns["keys"]:
        raise InputError("no predictions", path=path)
    class_score = class_scores.pop() if len(class_scores) == 1 else None
    if isinstance(class_score, str) and _is_number(class_score):
        class_score = None  # a per-sample score, not the name of the class score
    return Predictions(
        path=path, keys=columns["keys"], urls=columns["urls"], lines=np.array(columns["lines"], np.int64),
        label=np.array(columns["label"], np.int32), similarity=np.array(columns["similarity"], np.float64),
        verdict=np.array(columns["verdict"], np.int8), margin=np.array(columns["margin"], np.float64),
        best_other=np.array(columns["best_other"], np.int32), suggested=np.array(columns["suggested"], np.int32),
        class_names=list(class_names),
        class_score=class_score if isinstance(class_score, str) and class_score else None)
