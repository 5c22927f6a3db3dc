"""Which decision made the verdicts of a predictions file, and how close each verdict was.

inference.py's output holds the verdicts but not the rule that made them. The rule is:
- the relative decision of a calibration.json (cleannet.calibration) when one is given;
- else the threshold decision with --val_sim_thres when every verdict is 1[cos >= it];
- else the relative decision with the margin cut read off the verdicts (the smallest margin
  judged correct), when the file has margins.
`certainty` is the distance of a sample's score from the cut of that rule: a small value
means a verdict that a small change of the model could flip.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from cleannet.calibration import Calibration
from cleannet.decision import RelativeDecision, ThresholdDecision
from noisylabels.errors import InputError


@dataclasses.dataclass(frozen=True)
class DecisionUsed:
    """The rule behind the verdicts.

    Attributes:
      decision: a cleannet.decision object.
      source: how it was found, in words (for the page).
      calibration: the Calibration read from calibration.json, or None.
      disagreements: samples whose verdict differs from what `decision` gives.
    """

    decision: ThresholdDecision | RelativeDecision
    source: str
    calibration: Calibration | None
    disagreements: int


def read_calibration_file(path: str) -> Calibration:
    """A calibration.json (cleannet.calibration) read without checking its checkpoint."""
    try:
        with open(path) as f:
            stored = json.load(f)
        return Calibration(**{field.name: stored[field.name] for field in dataclasses.fields(Calibration)})
    except FileNotFoundError:
        raise InputError("file not found", path=path, field="--calibration") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError("not a calibration.json written by inference.py --mode=calibrate (%s)" % err,
                         path=path, field="--calibration") from None


def find_decision(predictions, threshold: float, calibration_path: str | None = None) -> DecisionUsed:
    """The DecisionUsed for cleannet.review.predictions.Predictions (module docstring)."""
    def disagreeing(decision):
        margin = np.nan_to_num(predictions.margin, nan=-np.inf)
        return int(np.sum(decision.verdicts(predictions.similarity, margin) != predictions.verdict))

    if calibration_path:
        calibration = read_calibration_file(calibration_path)
        if not predictions.has_margin:
            raise InputError("the predictions have no margin column, so they were not made with the relative "
                             "decision of this calibration", path=predictions.path, field="margin")
        decision = calibration.decision()
        return DecisionUsed(decision, "relative, calibrated (%s)" % os.path.basename(calibration_path),
                            calibration, disagreeing(decision))
    decision = ThresholdDecision(threshold)
    wrong = disagreeing(decision)
    if wrong == 0 or not predictions.has_margin:
        return DecisionUsed(decision, "threshold (cos >= %g)" % threshold, None, wrong)
    correct = (predictions.verdict == 1) & np.isfinite(predictions.margin)
    cut = float(predictions.margin[correct].min()) if correct.any() else float(np.nanmax(predictions.margin)) + 1e-3
    relative = RelativeDecision(cut)
    return DecisionUsed(relative, "relative (margin cut %.4g read off the verdicts; no calibration.json given)"
                        % cut, None, disagreeing(relative))


def certainty(predictions, decision: ThresholdDecision | RelativeDecision) -> np.ndarray:
    """float64 [n]: how far each sample's score lies from the decision's cut (>= 0).

    Threshold: |cos - threshold|. Relative: |margin - min_margin| (inf without a margin);
    with a threshold as well, the distance of the condition that decides the verdict:
    the smaller one when both hold, else the larger failing one.
    """
    to_threshold = None
    if getattr(decision, "threshold", None) is not None:
        to_threshold = predictions.similarity - decision.threshold
    if isinstance(decision, ThresholdDecision):
        return np.abs(to_threshold)
    to_margin = np.where(np.isfinite(predictions.margin), predictions.margin - decision.min_margin, np.inf)
    if to_threshold is None:
        return np.abs(to_margin)
    both_hold = (to_margin >= 0) & (to_threshold >= 0)
    failing = np.maximum(np.where(to_margin < 0, -to_margin, 0), np.where(to_threshold < 0, -to_threshold, 0))
    return np.where(both_hold, np.minimum(to_margin, to_threshold), failing)
