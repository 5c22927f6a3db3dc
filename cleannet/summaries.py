"""TensorBoard views of a CleanNet validation beyond the scalar loss and accuracy.

At each validation train.py writes, to the val writer:
- `val/pr_label_noise`: a precision–recall curve for label-noise detection (positive =
  the label is wrong, vlabel 0; score = (1 − cos) / 2, so lower similarity = more likely
  noise), in TensorBoard's PR-curves plugin format;
- `val/similarity_correct_label` and `val/similarity_wrong_label`: histograms of the
  cosine similarity for samples whose label is correct and wrong;
- `val/per_class_accuracy`: a Markdown table (text plugin) of samples, label-noise share and
  accuracy at --val_sim_thres per class.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorboard.plugins.pr_curve import metadata as pr_metadata

from cleannet.decision import ThresholdDecision

PR_THRESHOLDS = 101


def pr_curve_data(labels: np.ndarray, scores: np.ndarray, num_thresholds: int = PR_THRESHOLDS) -> np.ndarray:
    """TensorBoard's PR-curve tensor: float32 [6, T] = TP, FP, TN, FN, precision, recall.

    Args:
      labels: bool [n], True for positives.
      scores: float [n] in [0, 1]; a sample is predicted positive at threshold t when score ≥ t.
      num_thresholds: T thresholds evenly spaced in [0, 1].
    """
    labels = np.asarray(labels, bool)
    scores = np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    thresholds = np.linspace(0.0, 1.0, num_thresholds)
    predicted = scores[None, :] >= thresholds[:, None]  # [T, n]
    tp = np.sum(predicted & labels, axis=1).astype(np.float64)
    fp = np.sum(predicted & ~labels, axis=1).astype(np.float64)
    fn = labels.sum() - tp
    tn = (~labels).sum() - fp
    precision = tp / np.maximum(tp + fp, 1e-7)
    recall = tp / np.maximum(tp + fn, 1e-7)
    return np.stack([tp, fp, tn, fn, precision, recall]).astype(np.float32)


def per_class_table(similarities: np.ndarray, vlabels: np.ndarray, class_ids: np.ndarray, threshold: float,
                    class_names: Sequence[str] | None = None) -> str:
    """Markdown table: class, samples, wrong-label share, accuracy at threshold."""
    rows = ["| class | samples | wrong labels | accuracy |", "|---|---|---|---|"]
    correct = ThresholdDecision(threshold).verdicts(similarities) == (vlabels == 1)
    for c in np.unique(class_ids):
        mask = class_ids == c
        name = class_names[c] if class_names is not None and c < len(class_names) else "class %d" % c
        rows.append("| %s | %d | %.3f | %.3f |" % (name, int(mask.sum()), float(np.mean(vlabels[mask] == 0)),
                                                   float(np.mean(correct[mask]))))
    return "\n".join(rows)


def write_validation_summaries(step: int, similarities: np.ndarray, vlabels: np.ndarray, class_ids: np.ndarray,
                               threshold: float, class_names: Sequence[str] | None = None) -> None:
    """Writes the views above at `step` to the default summary writer."""
    similarities = np.asarray(similarities, np.float32)
    vlabels = np.asarray(vlabels)
    class_ids = np.asarray(class_ids)
    metadata = pr_metadata.create_summary_metadata(
        display_name="label-noise detection", description="positive: wrong label; score (1 - cos) / 2",
        num_thresholds=PR_THRESHOLDS)
    tf.summary.write("val/pr_label_noise", pr_curve_data(vlabels == 0, (1.0 - similarities) / 2.0),
                     step=step, metadata=metadata)
    if np.any(vlabels == 1):
        tf.summary.histogram("val/similarity_correct_label", similarities[vlabels == 1], step=step)
    if np.any(vlabels == 0):
        tf.summary.histogram("val/similarity_wrong_label", similarities[vlabels == 0], step=step)
    tf.summary.text("val/per_class_accuracy", per_class_table(similarities, vlabels, class_ids, threshold,
                                                              class_names), step=step)
