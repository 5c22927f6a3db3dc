"""What each stage trains on and is tested on: pure functions of the stage and a batch.

Labels are int64 [B, 3] = (clean label, noisy label, noise type), −1 where unknown (the
columns of a prepared split). The cross-entropies ignore samples whose target is −1 and
divide by the whole batch B (Caffe's companion losses); the noisy-label loss is
`noise_model.model.layers.NoisyLabelLoss` (docs/noise_model.md describes the losses).
"""

from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from noise_model.model import layers
from noise_model.protocol import CLEAN_COLUMN, NTYPE_COLUMN, STAGE_NET
from noise_model.training.settings import SolverSettings

LOSS_TERMS = ("clean_loss", "ntype_loss", "noisy_label_loss")


def stage_targets(stage: str, labels) -> Dict[str, tf.Tensor]:
    """The label vectors a stage trains on.

    Args:
      stage: one of protocol.STAGES.
      labels: int64 [B, 3] = (clean label, noisy label, noise type), −1 where unknown.

    Returns:
      dict with the entries that apply, each int64 [B] with −1 = none: "clean" (target of
      the clean-label CE: the clean label; noisy_gt: the clean label where there is one,
      else the noisy label), "ntype" (the noise type) and "noisy" (the noisy label, for
      the noisy-label loss).
    """
    labels = tf.convert_to_tensor(labels)
    clean, noisy, ntype = labels[:, 0], labels[:, 1], labels[:, 2]
    if stage == "clean":
        return {"clean": clean}
    if stage == "noisy_gt":
        return {"clean": tf.where(clean >= 0, clean, noisy)}
    if stage == "ntype":
        return {"ntype": ntype}
    return {"clean": clean, "ntype": ntype, "noisy": noisy}


def loss_terms(stage: str, clean_logits: Optional[tf.Tensor], ntype_logits: Optional[tf.Tensor], labels,
               noisy_label_loss: Optional[layers.NoisyLabelLoss] = None) -> Dict[str, tf.Tensor]:
    """The loss terms of a stage, before weighting.

    Args:
      clean_logits: float32 [B, L], or None for a stage without a clean-label net.
      ntype_logits: float32 [B, 3], or None for a stage without a noise-type net.
      labels: int64 [B, 3] as in `stage_targets`.
      noisy_label_loss: the joint stages' NoisyLabelLoss layer.

    Returns:
      dict term → float32 scalar, only the terms of the nets the stage has: "clean_loss"
      (masked CE of the clean net), "ntype_loss" (masked CE of the noise-type net),
      "noisy_label_loss" (−log p(ỹ | x) plus the posterior's entropy, per noisy sample,
      divided by B).
    """
    targets = stage_targets(stage, labels)
    terms = {}
    if "clean" in targets:
        terms["clean_loss"] = layers.masked_cross_entropy(targets["clean"], clean_logits)
    if "ntype" in targets:
        terms["ntype_loss"] = layers.masked_cross_entropy(targets["ntype"], ntype_logits)
    if "noisy" in targets:
        terms["noisy_label_loss"] = noisy_label_loss([clean_logits, ntype_logits, targets["noisy"]])
    return terms


def weighted_loss(terms: Dict[str, tf.Tensor], settings: SolverSettings) -> tf.Tensor:
    """Σ weight · term (float32 scalar) with the stage's loss weights."""
    total = tf.constant(0.0, tf.float32)
    for name, value in terms.items():
        total += float(settings.loss_weight(name)) * value
    return total


def train_accuracy_target(stage: str, labels) -> Tuple[tf.Tensor, str]:
    """(targets int64 [B], branch "clean" or "ntype") the training accuracy is measured on."""
    targets = stage_targets(stage, labels)
    if stage == "ntype":
        return targets["ntype"], "ntype"
    return targets["clean"], "clean"


def test_splits(dataset: str, stage: str) -> List[Tuple[str, str, int]]:
    """The splits a stage is tested on: list of (summary tag prefix, split, label column).

    The clean-label stages (and the joint ones, through their clean net) are tested on the
    clean label of "test" (and on Clothing1M first of its validation split "clean_val");
    the ntype stage on the noise type of "ntype_test" (and Clothing1M's "ntype_val").
    """
    if STAGE_NET[stage] == "ntype":
        tests = [("test", "ntype_test", NTYPE_COLUMN)]
        if dataset == "clothing1m":
            tests.insert(0, ("val", "ntype_val", NTYPE_COLUMN))
    else:
        tests = [("test", "test", CLEAN_COLUMN)]
        if dataset == "clothing1m":
            tests.insert(0, ("val", "clean_val", CLEAN_COLUMN))
    return tests
