"""Calibrating the relative decision on the verified validation split, and its file.

The relative decision (cleannet.decision.RelativeDecision) judges a label wrong when
another class scores higher than the labelled class by more than a margin (class scores:
cleannet.scoring.CLASS_SCORES).
`calibrate` picks the min_margin (and, when asked, a similarity threshold) that minimise
the detection error on verified samples (vlabel 1 = label correct, 0 = wrong); because the
margin compares classes with each other rather than using an absolute similarity level,
it transfers to classes that had no verification labels in training.

The result is stored as `calibration.json` beside the checkpoint it was made for:

    {"decision": "relative", "class_score": "references", "min_margin": -0.05,
     "threshold": null, "checkpoint": "ckpt-1500", "val_error": 0.03, "val_samples": 135}

`inference.py --decision=relative` refuses to run without it, or when it names another
checkpoint or class score than the ones in use.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import TYPE_CHECKING, Optional

import numpy as np

from cleannet.decision import RelativeDecision
from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open
from noisylabels.state_files import read_json_state

if TYPE_CHECKING:
    from cleannet.numpy_model import NumpyCleanNet

CALIBRATION_FILE = "calibration.json"
THRESHOLD_CANDIDATES = 101  # quantiles of the own-class similarity tried as thresholds
EDGE = 1e-3  # how far beyond the extreme values the "judge all correct / all wrong" cuts lie


def is_finite_number(value: object) -> bool:
    """True for a finite int or float (not a bool, None or a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A calibrated relative decision and where it came from."""
    class_score: str
    min_margin: float
    threshold: Optional[float]
    checkpoint: str
    val_error: float
    val_samples: int

    def decision(self) -> RelativeDecision:
        return RelativeDecision(self.min_margin, self.threshold)


def best_cut(values: np.ndarray, labels: np.ndarray, prefer: float = 0.0) -> tuple[float, int]:
    """The cut minimising the errors of the rule 1[value ≥ cut] against 0/1 labels.

    Candidates: midpoints between consecutive distinct values, and just below the smallest
    (all judged 1) and just above the largest (all judged 0). Ties go to the cut closest
    to `prefer`.

    Args:
      values: float [n], n ≥ 1.
      labels: 0/1 [n].

    Returns:
      (cut, number of errors).
    """
    values = np.asarray(values, np.float64)
    labels = np.asarray(labels) != 0
    order = np.argsort(values, kind="stable")
    values, labels = values[order], labels[order]
    distinct = np.flatnonzero(np.diff(values) > 0) + 1  # cut before these sorted positions
    positions = np.concatenate([[0], distinct, [len(values)]])
    cuts = np.concatenate([[values[0] - EDGE], (values[distinct - 1] + values[distinct]) / 2,
                           [values[-1] + EDGE]])
    positives_below = np.concatenate([[0], np.cumsum(labels)])[positions]
    negatives_above = (~labels).sum() - np.concatenate([[0], np.cumsum(~labels)])[positions]
    errors = positives_below + negatives_above
    best = np.flatnonzero(errors == errors.min())
    choice = best[np.argmin(np.abs(cuts[best] - prefer))]
    return float(cuts[choice]), int(errors[choice])


def calibrate(similarity: np.ndarray, margin: np.ndarray, vlabels: np.ndarray,
              with_threshold: bool = False) -> tuple[float, float | None, float]:
    """Chooses the relative decision's parameters on verified samples.

    Args:
      similarity: float [n], own-class cosine.
      margin: float [n], own-class cosine minus the best other class's (finite).
      vlabels: 0/1 [n], 1 = label correct.
      with_threshold: also choose a threshold on the similarity (from its quantiles); a
        threshold is kept only when it lowers the error.

    Returns:
      (min_margin, threshold or None, error rate).
    """
    similarity = np.asarray(similarity, np.float64)
    margin = np.asarray(margin, np.float64)
    vlabels = np.asarray(vlabels) != 0
    if len(margin) == 0 or not np.all(np.isfinite(margin)):
        raise ValueError("calibration needs at least one sample and finite margins (two or more classes)")
    min_margin, errors = best_cut(margin, vlabels)
    threshold = None
    if with_threshold:
        for candidate in np.unique(np.quantile(similarity, np.linspace(0, 1, THRESHOLD_CANDIDATES))):
            kept = similarity >= candidate
            if not kept.any():
                continue
            cut, kept_errors = best_cut(margin[kept], vlabels[kept])
            total = kept_errors + int(vlabels[~kept].sum())
            if total < errors:
                min_margin, threshold, errors = cut, float(candidate), total
    return min_margin, threshold, errors / len(margin)


def check_calibration_set(class_ids: np.ndarray, vlabels: np.ndarray, source: str = "val.npy") -> None:
    """Raises InputError (one line: the problem and what to pass instead) unless the verified
    samples [n] hold both verdicts (vlabel 0 and 1) and at least two classes."""
    vlabels = np.asarray(vlabels) != 0
    instead = "or use --decision=threshold"
    if len(vlabels) == 0:
        raise InputError("has no rows: the relative decision is calibrated on verified samples; pass a "
                         "non-empty verified split, " + instead, path=source)
    for value, present in ((0, (~vlabels).any()), (1, vlabels.any())):
        if not present:
            raise InputError("has no sample with vlabel %d (no verified %s label): a margin cannot be calibrated "
                             "on one kind of verdict; pass a verified split that holds correct and wrong labels, %s"
                             % (value, "wrong" if value == 0 else "correct", instead), path=source, field="vlabel")
    classes = np.unique(np.asarray(class_ids))
    if len(classes) < 2:
        raise InputError("holds samples of class id %d only: the margin compares classes, so it is calibrated on "
                         "verified samples of two or more classes; pass those, %s" % (classes[0], instead),
                         path=source, field="class id")


def calibrate_model(model: NumpyCleanNet, reference_table: np.ndarray, features: np.ndarray, class_ids: np.ndarray,
                    vlabels: np.ndarray, checkpoint: str, class_score: str = "references",
                    with_threshold: bool = False, batch_size: int = 4096,
                    bank: tuple[np.ndarray, np.ndarray] | None = None) -> Calibration:
    """Scores verified samples against every class and calibrates the relative decision.

    Args:
      model: a trained CleanNet's inference path (cleannet.numpy_model.NumpyCleanNet).
      reference_table: float32 [C, R, h], ref.npy (C ≥ 2).
      features, class_ids, vlabels: the verified split, [n, h], [n], [n] (val.npy, n ≥ 1).
      checkpoint: the checkpoint path (or name) of the model, recorded in the result.
      class_score: one of cleannet.scoring.CLASS_SCORES.
      with_threshold: also choose a similarity threshold (see `calibrate`).
      bank: (features [N, h], class ids [N]) of all.npy, for class_score "neighbours".
    """
    from cleannet.scoring import ClassEmbeddingScorer

    check_calibration_set(class_ids, vlabels)
    scorer = ClassEmbeddingScorer(model, reference_table, bank=bank)
    scores = scorer.score_against_all(features, class_ids, class_score, batch_size)
    min_margin, threshold, error = calibrate(scores.similarity, scores.margin, vlabels, with_threshold)
    return Calibration(class_score, min_margin, threshold, os.path.basename(str(checkpoint)), error, len(scores))


def write_calibration(directory: str, calibration: Calibration) -> str:
    """Writes DIRECTORY/calibration.json atomically; refuses non-finite values. Returns the path."""
    numbers = [calibration.min_margin, calibration.val_error]
    if calibration.threshold is not None:
        numbers.append(calibration.threshold)
    if not all(is_finite_number(v) for v in numbers):
        raise ValueError("refusing to write a non-finite calibration: %r" % (calibration,))
    path = os.path.join(directory, CALIBRATION_FILE)
    with atomic_open(path, "w") as f:
        json.dump(dict(decision="relative", **dataclasses.asdict(calibration)), f, indent=1)
        f.write("\n")
    return path


def read_calibration(directory: str, checkpoint: str, class_score: str | None, calibrate_command: str) -> Calibration:
    """Reads DIRECTORY/calibration.json for the model restored from `checkpoint`.

    Raises InputError (one line saying to run `calibrate_command`) when the file is
    missing, malformed, non-finite, or made for another checkpoint or class score
    (class_score None: the stored one, whichever it is).
    """
    path = os.path.join(directory, CALIBRATION_FILE)
    if not os.path.exists(path):
        raise InputError("no %s: --decision=relative needs a calibrated margin; run %s"
                         % (CALIBRATION_FILE, calibrate_command), path=directory, field="--decision")
    stored = read_json_state(path, "run %s" % calibrate_command)
    try:
        calibration = Calibration(**{field.name: stored[field.name] for field in dataclasses.fields(Calibration)})
    except (KeyError, TypeError) as err:
        raise InputError("unreadable calibration (%s); run %s" % (err, calibrate_command), path=path) from None
    numbers = [calibration.min_margin] + ([] if calibration.threshold is None else [calibration.threshold])
    if not all(is_finite_number(v) for v in numbers):
        raise InputError("holds a non-finite value; run %s" % calibrate_command, path=path)
    name = os.path.basename(str(checkpoint))
    if calibration.checkpoint != name:
        raise InputError("was calibrated for %s but the model is %s; run %s"
                         % (calibration.checkpoint, name, calibrate_command), path=path, field="checkpoint")
    if class_score is not None and calibration.class_score != class_score:
        raise InputError("was calibrated with --class_score=%s, not %s; pass --class_score=%s or run %s"
                         % (calibration.class_score, class_score, calibration.class_score, calibrate_command),
                         path=path, field="class_score")
    return calibration
