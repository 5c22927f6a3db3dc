"""Writers for inference results: plain similarities, TSV / JSON lines, sample weights.

Formats (one record per scored sample, in input order):
- plain: the cosine similarity alone, as the original wrote it (default, drop-in);
- tsv:   key, url (empty when the input had none), class_name, similarity, verdict
         (1 = label judged correct under the decision: cos ≥ threshold by default), with a
         header line; with cross-class scores (cleannet.scoring.CrossClassScores) also
         best_other_class (the class other than the label with the highest class score),
         best_other_similarity (its score), margin (class_score minus
         best_other_similarity, exactly: the difference of the two printed numbers, written
         with as many digits as it takes), suggested_class (best_other_class where the label
         is judged wrong and that class scores higher, else empty) and class_score (the
         labelled class's score on the same scale as best_other_similarity, see
         cleannet.scoring.CLASS_SCORES; `similarity` is CleanNet's cosine, another scale);
- jsonl: one JSON object per line with the same fields (null where a tsv field is empty).
Sample weights for classifier training (the paper's): key, class_name, soft weight
max(0, cos), hard weight = the verdict, as TSV with a header line.

A decision is a cleannet.decision object; a plain number means the threshold decision.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

import numpy as np

from cleannet.decision import RelativeDecision, ThresholdDecision, suggested_classes, verdicts_of
from noisylabels.strict_numbers import format_float32 as format_similarity

from cleannet.choices import OUTPUT_FORMATS

if TYPE_CHECKING:
    from cleannet.scoring import CrossClassScores
BASE_FIELDS = ("key", "url", "class_name", "similarity", "verdict")
CROSS_CLASS_FIELDS = ("best_other_class", "best_other_similarity", "margin", "suggested_class", "class_score")


def _clean(text):
    return "" if text is None else str(text).replace("\t", " ").replace("\n", " ")


def as_decision(decision: ThresholdDecision | RelativeDecision | float) -> ThresholdDecision | RelativeDecision:
    """A decision object; a number means ThresholdDecision(number)."""
    return ThresholdDecision(float(decision)) if isinstance(decision, (int, float)) else decision


def _or_blank(values, n):
    return [None] * n if values is None else values


def _similarities(scores):
    return np.asarray(getattr(scores, "similarity", scores), dtype=np.float32)


def _verdicts(decision, scores):
    """The verdicts for CrossClassScores, or for similarities read as float32 like the output."""
    return verdicts_of(decision, scores if hasattr(scores, "margin") else _similarities(scores)).tolist()


class ResultWriter:
    """Writes scored samples to an open text file in one of OUTPUT_FORMATS.

    Args:
      stream: an open text file.
      output_format: one of OUTPUT_FORMATS.
      decision: a cleannet.decision object, or a threshold.
      class_list: all class names by id; given, tsv / jsonl get the cross-class fields
        and `write` needs cleannet.scoring.CrossClassScores.
    """

    def __init__(self, stream: TextIO, output_format: str, decision: ThresholdDecision | RelativeDecision | float,
                 class_list: Sequence[str] | None = None) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError("output_format must be one of %s" % "|".join(OUTPUT_FORMATS))
        self.stream = stream
        self.output_format = output_format
        self.decision = as_decision(decision)
        self.class_list = class_list
        self.fields = BASE_FIELDS + (CROSS_CLASS_FIELDS if class_list is not None else ())
        if output_format == "tsv":
            stream.write("\t".join(self.fields) + "\n")

    def write(self, scores: np.ndarray | CrossClassScores, keys: Sequence[str] | None = None,
              urls: Sequence[str | None] | None = None, class_names: Sequence[str] | None = None) -> None:
        """Writes one record per sample.

        Args:
          scores: similarities float [n], or CrossClassScores (required with class_list).
          keys, urls, class_names: lists of n entries, or None.
        """
        similarities = _similarities(scores)
        n = len(similarities)
        if self.output_format == "plain":
            self.stream.write("".join(format_similarity(s) + "\n" for s in similarities.tolist()))
            return
        columns = [_or_blank(keys, n), _or_blank(urls, n), _or_blank(class_names, n),
                   [format_similarity(s) for s in similarities.tolist()], _verdicts(self.decision, scores)]
        if self.class_list is not None:
            columns += self._cross_class_columns(scores, columns[4])
        if self.output_format == "tsv":
            lines = ["\t".join(_clean(v) for v in row) + "\n" for row in zip(*columns)]
        else:
            lines = [json.dumps(self._json_record(row)) + "\n" for row in zip(*columns)]
        self.stream.write("".join(lines))

    def _name(self, class_id):
        return self.class_list[class_id] if class_id >= 0 else None

    def _cross_class_columns(self, scores, verdicts):
        """Columns best_other_class, best_other_similarity, margin, suggested_class, class_score
        (None: empty). margin is the float64 difference of the printed class_score and
        best_other_similarity, printed so that it reads back exactly (repr)."""
        has_other = scores.best_other_class >= 0
        best = [self._name(c) for c in scores.best_other_class.tolist()]
        own = [format_similarity(s) for s in scores.own_score.tolist()]
        best_sim = [format_similarity(s) if ok else None
                    for s, ok in zip(scores.best_other_score.tolist(), has_other)]
        margin = [repr(float(o) - float(b)) if b is not None else None for o, b in zip(own, best_sim)]
        suggested = [self._name(c) for c in suggested_classes(scores, np.asarray(verdicts)).tolist()]
        return [best, best_sim, margin, suggested, own]

    def _json_record(self, row):
        record = dict(zip(self.fields, row))
        for name in ("similarity", "best_other_similarity", "margin", "class_score"):
            if record.get(name) is not None:
                record[name] = float(record[name])
        return record


class WeightWriter:
    """Writes the paper's sample weights: soft max(0, cos) and hard = the verdict.

    Args:
      stream: an open text file.
      decision: a cleannet.decision object, or a threshold (hard weight 1[cos ≥ threshold]).
    """

    def __init__(self, stream: TextIO, decision: ThresholdDecision | RelativeDecision | float) -> None:
        self.stream = stream
        self.decision = as_decision(decision)
        stream.write("key\tclass_name\tsoft_weight\thard_weight\n")

    def write(self, scores: np.ndarray | CrossClassScores, keys: Sequence[str], class_names: Sequence[str]) -> None:
        """scores: similarities float [n] or CrossClassScores (needed by the relative decision)."""
        similarities = _similarities(scores).tolist()
        hard = _verdicts(self.decision, scores)
        lines = ["%s\t%s\t%s\t%d\n" % (_clean(key), _clean(name), format_similarity(max(0.0, sim)), verdict)
                 for sim, key, name, verdict in zip(similarities, keys, class_names, hard)]
        self.stream.write("".join(lines))
