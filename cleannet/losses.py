"""CleanNet's losses (docs/originals.md#cleannet-losses), with the original functions' signatures.

Every function accepts NumPy arrays or tensors and returns a per-sample float32 tensor [B];
the training objective is the batch mean of `total_loss`.
"""

import numpy as np
import tensorflow as tf

PSEUDO_LABEL_THRESHOLD = 0.1


def _float(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def reconst_loss(x: tf.Tensor | np.ndarray, r_x: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Σ_features (x − r_x)²: [B, h], [B, h] → [B]."""
    return tf.reduce_sum(tf.square(_float(x) - _float(r_x)), axis=1)


def cos_sim_loss(vlabel: tf.Tensor | np.ndarray, cos_sim: tf.Tensor | np.ndarray, neg_weight: float,
                 margin: float = 0.1) -> tf.Tensor:
    """vlabel·(1 − cos) + neg_weight·(1 − vlabel)·max(0, cos − margin): [B], [B] → [B]."""
    vlabel = _float(vlabel)
    cos_sim = _float(cos_sim)
    positive = vlabel * (1.0 - cos_sim)
    negative = neg_weight * (1.0 - vlabel) * tf.maximum(0.0, cos_sim - margin)
    return positive + negative


def unsup_cos_sim_loss(cos_sim: tf.Tensor | np.ndarray, neg_weight: float, margin: float = 0.1) -> tf.Tensor:
    """`cos_sim_loss` with the pseudo-label 1[cos ≥ 0.1], a constant (no gradient through it)."""
    cos_sim = _float(cos_sim)
    pseudo_label = tf.stop_gradient(tf.cast(cos_sim >= PSEUDO_LABEL_THRESHOLD, tf.float32))
    return cos_sim_loss(pseudo_label, cos_sim, neg_weight, margin)


def total_loss(vlabel: tf.Tensor | np.ndarray, cos_sim: tf.Tensor | np.ndarray, phi_s: tf.Tensor | np.ndarray,
               v_q: tf.Tensor | np.ndarray, phi_q: tf.Tensor | np.ndarray, v_qr: tf.Tensor | np.ndarray,
               vflag: tf.Tensor | np.ndarray, neg_weight: float, beta: float = 0.1,
               gamma: float = 0.1) -> tf.Tensor:
    """Per sample: vflag·supervised + β·reconstruction + γ·(1 − vflag)·unsupervised → [B].

    phi_s and phi_q are accepted for the original signature; the loss uses cos_sim.
    """
    del phi_s, phi_q
    vflag = _float(vflag)
    supervised = cos_sim_loss(vlabel, cos_sim, neg_weight)
    unsupervised = unsup_cos_sim_loss(cos_sim, neg_weight)
    reconstruction = reconst_loss(v_q, v_qr)
    return vflag * supervised + beta * reconstruction + gamma * (1.0 - vflag) * unsupervised


def cross_class_loss(cos_other: tf.Tensor | np.ndarray, weight: tf.Tensor | np.ndarray, neg_weight: float,
                     margin: float = 0.1) -> tf.Tensor:
    """The supervised loss of a pair known to be a negative (vlabel 0), weighted per sample:
    weight·neg_weight·max(0, cos_other − margin): [B], [B] → [B].

    cos_other is the cosine of a sample to a class other than its (correct) label; beyond
    the paper (train.py --recipe=robust).
    """
    return _float(weight) * cos_sim_loss(tf.zeros_like(_float(cos_other)), cos_other, neg_weight, margin)
