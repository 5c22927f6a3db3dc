"""How a sample's scores become a verdict (1 = label judged correct, 0 = judged wrong).

Two decisions, chosen with inference.py's --decision:
- threshold (the paper's, the default): correct when cos(sample, labelled class) ≥ threshold.
- relative (beyond the paper): correct when the labelled class is not beaten by another
  class by more than a margin, i.e. margin = score(own class) − max over other classes
  score(other) ≥ min_margin (class scores: cleannet.scoring.CLASS_SCORES), optionally also
  requiring cos(own) ≥ threshold. min_margin (and the threshold) are calibrated on the
  verified validation split (cleannet.calibration).

Both compare in float64 so that a float32 similarity compares with the threshold exactly
as a Python float does (the rule of cleannet.metrics.predict_label_correct, which train.py's
validation accuracy uses; here in NumPy, so that inference needs no TensorFlow).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from cleannet.scoring import CrossClassScores


def _at_least(values, bound: float) -> np.ndarray:
    """int8 [n]: 1 where values ≥ bound (float64 comparison), else 0."""
    return (np.asarray(values, np.float64) >= bound).astype(np.int8)


@dataclasses.dataclass(frozen=True)
class ThresholdDecision:
    """The paper's verdict 1[cos ≥ threshold]; needs the own-class similarity only."""
    threshold: float
    name = "threshold"
    needs_other_classes = False

    def verdicts(self, similarity: np.ndarray, margin: np.ndarray | None = None) -> np.ndarray:
        """int8 [n] verdicts for similarities [n] (margin is ignored)."""
        del margin
        return _at_least(similarity, self.threshold)


@dataclasses.dataclass(frozen=True)
class RelativeDecision:
    """Verdict 1[margin ≥ min_margin] (and 1[cos ≥ threshold] when a threshold is set).

    margin: the labelled class's score minus the best other class's, in [-2, 2].
    """
    min_margin: float
    threshold: Optional[float] = None
    name = "relative"
    needs_other_classes = True

    def verdicts(self, similarity: np.ndarray, margin: np.ndarray) -> np.ndarray:
        """int8 [n] verdicts for similarities [n] and margins [n]."""
        verdict = _at_least(margin, self.min_margin)
        if self.threshold is not None:
            verdict &= _at_least(similarity, self.threshold)
        return verdict


def verdicts_of(decision: ThresholdDecision | RelativeDecision,
                scores: np.ndarray | CrossClassScores) -> np.ndarray:
    """int8 [n] verdicts of `decision` for similarities [n] or cleannet.scoring.CrossClassScores."""
    if hasattr(scores, "margin"):
        return decision.verdicts(scores.similarity, scores.margin)
    return decision.verdicts(scores)


def suggested_classes(scores: CrossClassScores, verdicts: np.ndarray) -> np.ndarray:
    """int32 [n]: the best other class where the label is judged wrong and that class
    scores higher than the labelled one; -1 elsewhere.

    Args:
      scores: cleannet.scoring.CrossClassScores for n samples.
      verdicts: int [n] from a decision.
    """
    wins = ((np.asarray(verdicts) == 0) & (scores.best_other_class >= 0)
            & (scores.best_other_score > scores.own_score))
    return np.where(wins, scores.best_other_class, -1).astype(np.int32)
