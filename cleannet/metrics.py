"""Similarity and verification accuracy (the original metrics.py)."""

import numpy as np
import tensorflow as tf


def similarity(x1: tf.Tensor | np.ndarray, x2: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Per-row cosine similarity of [B, d] and [B, d] → [B] (rows L2-normalised, epsilon 1e-12)."""
    x1 = tf.math.l2_normalize(tf.cast(tf.convert_to_tensor(x1), tf.float32), axis=1)
    x2 = tf.math.l2_normalize(tf.cast(tf.convert_to_tensor(x2), tf.float32), axis=1)
    return tf.reduce_sum(x1 * x2, axis=1)


def predict_label_correct(cos_sim: tf.Tensor | np.ndarray, threshold: float = 0.1) -> tf.Tensor:
    """The verdict: 1.0 where cos ≥ threshold (label judged correct), else 0.0. [B] → [B]."""
    return tf.cast(tf.convert_to_tensor(cos_sim) >= threshold, tf.float32)


def accuracy(vlabel: tf.Tensor | np.ndarray, cos_sim: tf.Tensor | np.ndarray, threshold: float = 0.1) -> tf.Tensor:
    """mean(vlabel == 1[cos ≥ threshold]) → scalar float32."""
    vlabel = tf.cast(tf.convert_to_tensor(vlabel), tf.float32)
    correct = tf.cast(tf.equal(vlabel, predict_label_correct(cos_sim, threshold)), tf.float32)
    return tf.reduce_mean(correct)
