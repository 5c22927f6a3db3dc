"""The noisy-label loss layer of Xiao et al. (CVPR 2015) and its companion losses.

`NoisyLabelLoss` is the port of Caffe's `SoftmaxWithNoisyLabelLoss` (docs/originals.md#noisy-label-model-the-loss-layer). For
each sample it combines

  p(y | x)      the clean-label net's softmax over the L classes,
  p(z | x)      the noise-type net's softmax over z in {0 noise-free, 1 random, 2 confusing},
  p(ỹ | y, z)   1[ỹ = y] for z = 0, 1[ỹ ≠ y] / (L - 1) for z = 1, C[ỹ, y] for z = 2,

into the posterior q(y, z) ∝ p(y|x) p(z|x) p(ỹ|y, z) (normalised by S = p(ỹ|x)) and
reports (1/M) Σ_labelled [H(q) − log S]. Its gradients are the EM gradients of −log S:
(p(y|x) − q(y)) / M for the clean logits and update_noise_lr · (p(z|x) − q(z)) / M for
the noise-type logits. Everything is computed in log space and in float64, so logits of
±1e4, a C with zero entries and batches without a labelled sample give finite, accurate
values.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import keras
import tensorflow as tf

from noise_model.protocol import NUM_NOISE_TYPES
from noisylabels.errors import InputError

# Caffe floors every logarithm at FLT_MIN, the smallest normal float32.
FLT_MIN = float(np.finfo(np.float32).tiny)
LOG_FLT_MIN = float(np.log(np.float64(FLT_MIN)))


def validate_matrix_c(matrix_c: np.ndarray | list) -> np.ndarray:
    """Checks that `matrix_c` is a finite, non-negative L×L array with L ≥ 2.

    Returns:
      The matrix as a float32 NumPy array.

    Raises:
      InputError: naming the problem.
    """
    try:
        matrix = np.asarray(matrix_c, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError("not a numeric matrix (%s)" % err, field="matrix_c") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError("has shape %s, expected L×L" % (matrix.shape,), field="matrix_c")
    if matrix.shape[0] < 2:
        raise InputError("needs at least 2 classes, got %d" % matrix.shape[0], field="matrix_c")
    if not np.all(np.isfinite(matrix)):
        raise InputError("has non-finite entries", field="matrix_c")
    if np.any(matrix < 0):
        raise InputError("has negative entries", field="matrix_c")
    return matrix.astype(np.float32)


def _labels_and_mask(labels):
    """Integer labels [M] and a float mask [M] of the samples that have one (label ≥ 0).

    `labels` may be an int or float tensor; float labels are truncated toward zero.
    Any negative label (the convention is −1) means "no label".
    """
    labels = tf.convert_to_tensor(labels)
    if labels.dtype.is_floating:
        labelled = labels >= 0
        labels = tf.cast(labels, tf.int64)
    else:
        labels = tf.cast(labels, tf.int64)
        labelled = labels >= 0
    labels = tf.reshape(labels, [-1])
    labelled = tf.reshape(labelled, [-1])
    safe_labels = tf.where(labelled, labels, tf.zeros_like(labels))
    return safe_labels, labelled


def _check_label_range(labels, num_classes):
    """Rejects labels ≥ num_classes: InputError when eager, a run-time assertion in graphs."""
    if tf.executing_eagerly():
        values = np.asarray(labels)
        if values.size and values.max() >= num_classes:
            raise InputError("label %d out of range: expected -1 (none) or 0..%d"
                             % (values.max(), num_classes - 1), field="noisy_labels")
        return []
    return [tf.debugging.assert_less(
        labels, tf.constant(num_classes, labels.dtype),
        message="noisy label out of range: expected -1 (none) or 0..L-1")]


def noisy_label_posteriors(clean_logits: tf.Tensor, ntype_logits: tf.Tensor, noisy_labels: tf.Tensor,
                           matrix_c: tf.Tensor) -> dict[str, tf.Tensor]:
    """The forward pass of docs/originals.md#noisy-label-model-the-loss-layer (no gradients: use `NoisyLabelLoss` for training).

    Args:
      clean_logits: float [M, L] logits of the clean-label net.
      ntype_logits: float [M, 3] logits of the noise-type net.
      noisy_labels: int or float [M], the noisy label ỹ, negative (−1) for none.
      matrix_c: float32 [L, L] tensor, entry [ỹ, y] = p(ỹ | y, z = 2).

    Returns:
      A dict of float64 tensors: `loss` (scalar), `p_y` [M, L], `p_z` [M, 3], `q_yz`
      [M, L, 3] (zero for samples without a usable label), `q_y` [M, L], `q_z` [M, 3],
      `valid` [M] (1 where the sample contributes, 0 otherwise) and `batch_size` (M as
      a float, at least 1). The work is done in float64: with logits of ±1e4 the log
      probabilities are near −2e4, where float32 resolves only steps of 2e-3.
    """
    clean_logits = tf.cast(clean_logits, tf.float64)
    ntype_logits = tf.cast(ntype_logits, tf.float64)
    matrix_c = tf.cast(matrix_c, tf.float64)
    num_classes = tf.shape(matrix_c)[0]
    labels, labelled = _labels_and_mask(noisy_labels)

    log_p_y = tf.nn.log_softmax(clean_logits, axis=-1)  # [M, L]
    log_p_z = tf.nn.log_softmax(ntype_logits, axis=-1)  # [M, 3]

    # log p(ỹ | y, z) for every y and z: [M, L, 3]; impossible pairs are −inf.
    classes = tf.range(num_classes, dtype=tf.int64)
    same = tf.equal(classes[None, :], labels[:, None])  # [M, L]: y == ỹ
    neg_inf = tf.fill(tf.shape(clean_logits), tf.constant(-np.inf, tf.float64))
    zeros = tf.zeros_like(clean_logits)
    log_lik_noise_free = tf.where(same, zeros, neg_inf)
    log_uniform = -tf.math.log(tf.cast(num_classes - 1, tf.float64))
    log_lik_random = tf.where(same, neg_inf, zeros + log_uniform)
    c_rows = tf.gather(matrix_c, labels)  # [M, L]: C[ỹ_i, y]
    log_lik_confusing = tf.math.log(c_rows)  # log 0 = −inf
    log_lik = tf.stack([log_lik_noise_free, log_lik_random, log_lik_confusing], axis=-1)

    log_joint = log_p_y[:, :, None] + log_p_z[:, None, :] + log_lik  # [M, L, 3]
    log_s = tf.reduce_logsumexp(log_joint, axis=[1, 2])  # [M], log p(ỹ | x)
    valid = tf.logical_and(labelled, tf.math.is_finite(log_s))
    valid_f = tf.cast(valid, tf.float64)
    safe_log_s = tf.where(valid, log_s, tf.zeros_like(log_s))
    q_yz = tf.exp(log_joint - safe_log_s[:, None, None]) * valid_f[:, None, None]

    # H(q) with logs floored at FLT_MIN (entries with q = 0 contribute 0).
    log_q = tf.maximum(tf.where(q_yz > 0, log_joint - safe_log_s[:, None, None],
                                tf.zeros_like(q_yz)), LOG_FLT_MIN)
    entropy = -tf.reduce_sum(q_yz * log_q, axis=[1, 2])
    neg_log_s = -tf.maximum(safe_log_s, LOG_FLT_MIN)
    batch_size = tf.maximum(tf.cast(tf.shape(clean_logits)[0], tf.float64), 1.0)
    loss = tf.reduce_sum((entropy + neg_log_s) * valid_f) / batch_size
    return {
        "loss": loss,
        "p_y": tf.exp(log_p_y),
        "p_z": tf.exp(log_p_z),
        "q_yz": q_yz,
        "q_y": tf.reduce_sum(q_yz, axis=2),
        "q_z": tf.reduce_sum(q_yz, axis=1),
        "valid": valid_f,
        "batch_size": batch_size,
    }


class NoisyLabelLoss(keras.layers.Layer):
    """Caffe's `SoftmaxWithNoisyLabelLoss` (docs/originals.md#noisy-label-model-the-loss-layer) as a Keras layer.

    Args:
      matrix_c: L×L array, entry [ỹ, y] = C[ỹ, y] (column y is the distribution of the
        noisy label given clean label y for confusing noise). Stored as the non-trainable
        weight `matrix_c`. Must be finite and non-negative (InputError otherwise).
      update_noise_lr: multiplier of the gradient sent to the noise-type logits (Caffe's
        `update_noise_lr`; 0 freezes the noise-type net through this loss). A Python float
        attribute that may be changed after construction; a `tf.function` reads it when it
        traces, so after changing it either trace a new function or pass the value (for
        example a `tf.Variable`) as the `update_noise_lr` argument of `call`.

    Call args:
      inputs: `[clean_logits [M, L], ntype_logits [M, 3], noisy_labels [M]]`; labels are
        int or float, −1 (any negative value) = no noisy label. A label ≥ L raises
        InputError in eager mode and fails a `tf.debugging` assertion inside a graph.
      return_posteriors: also return p(y|x), p(z|x) and q(y, z).
      update_noise_lr: optional override (float or scalar tensor) of the attribute.

    Returns:
      The float32 scalar loss (1/M) Σ_labelled [H(q_i) − log S_i], or with
      `return_posteriors=True` the tuple `(loss, p_y [M, L], p_z [M, 3], q_yz [M, L, 3])`.
      Only the loss carries gradients: (p(y|x) − q(y)) / M to the clean logits,
      update_noise_lr · (p(z|x) − q(z)) / M to the noise-type logits, zero rows for
      samples without a label (or with S = 0), none to the labels; the posteriors are
      returned as constants.
    """

    def __init__(self, matrix_c: np.ndarray | list, update_noise_lr: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        matrix = validate_matrix_c(matrix_c)
        self.num_classes = int(matrix.shape[0])
        self.update_noise_lr = float(update_noise_lr)
        self.matrix_c = self.add_weight(
            name="matrix_c", shape=matrix.shape, dtype="float32",
            initializer=keras.initializers.Constant(matrix), trainable=False)

    def call(self, inputs: Sequence[tf.Tensor], return_posteriors: bool = False,
             update_noise_lr: float | tf.Tensor | None = None) -> tf.Tensor | tuple[tf.Tensor, ...]:
        clean_logits, ntype_logits, noisy_labels = inputs
        clean_logits = tf.convert_to_tensor(clean_logits)
        ntype_logits = tf.convert_to_tensor(ntype_logits)
        if clean_logits.shape[-1] is not None and clean_logits.shape[-1] != self.num_classes:
            raise ValueError("clean logits have %d classes, matrix_c has %d"
                             % (clean_logits.shape[-1], self.num_classes))
        if ntype_logits.shape[-1] is not None and ntype_logits.shape[-1] != NUM_NOISE_TYPES:
            raise ValueError("noise-type logits have %d entries, expected %d"
                             % (ntype_logits.shape[-1], NUM_NOISE_TYPES))
        noisy_labels = tf.stop_gradient(tf.convert_to_tensor(noisy_labels))
        if update_noise_lr is None:
            update_noise_lr = self.update_noise_lr
        noise_lr = tf.cast(update_noise_lr, tf.float32)
        # Read the weight outside the custom-gradient function: it is a constant there.
        matrix_c = tf.convert_to_tensor(self.matrix_c)

        labels, _ = _labels_and_mask(noisy_labels)
        checks = _check_label_range(labels, self.num_classes)

        @tf.custom_gradient
        def loss_and_posteriors(clean, ntype):
            with tf.control_dependencies(checks):
                out = noisy_label_posteriors(clean, ntype, noisy_labels, matrix_c)
            scale = out["valid"][:, None] / out["batch_size"]
            grad_clean = tf.cast((out["p_y"] - out["q_y"]) * scale, tf.float32)
            grad_ntype = noise_lr * tf.cast((out["p_z"] - out["q_z"]) * scale, tf.float32)

            def grad(d_loss, *unused_d_posteriors):
                d_loss = tf.cast(d_loss, tf.float32)
                return (tf.cast(d_loss * grad_clean, clean.dtype),
                        tf.cast(d_loss * grad_ntype, ntype.dtype))

            outputs = [tf.cast(out[key], tf.float32) for key in ("loss", "p_y", "p_z", "q_yz")]
            return tuple(outputs), grad

        loss, p_y, p_z, q_yz = loss_and_posteriors(clean_logits, ntype_logits)
        if return_posteriors:
            return loss, tf.stop_gradient(p_y), tf.stop_gradient(p_z), tf.stop_gradient(q_yz)
        return loss

    def compute_output_spec(self, inputs: Sequence[keras.KerasTensor], return_posteriors: bool = False,
                            update_noise_lr: float | None = None
                            ) -> keras.KerasTensor | tuple[keras.KerasTensor, ...]:
        clean_logits, ntype_logits, _ = inputs
        loss = keras.KerasTensor((), dtype="float32")
        if not return_posteriors:
            return loss
        m, num_classes = clean_logits.shape
        return (loss, keras.KerasTensor((m, num_classes), dtype="float32"),
                keras.KerasTensor((m, NUM_NOISE_TYPES), dtype="float32"),
                keras.KerasTensor((m, num_classes, NUM_NOISE_TYPES), dtype="float32"))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"matrix_c": np.asarray(self.matrix_c.numpy()).tolist(),
                       "update_noise_lr": self.update_noise_lr})
        return config


def masked_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy over the samples with a label, divided by the whole batch.

    Args:
      labels: int or float [M], −1 (any negative value) = no label.
      logits: float [M, K].

    Returns:
      float32 scalar: Σ_{labelled} −log softmax(logits)[label] / M (0 if none labelled).
    """
    logits = tf.cast(logits, tf.float32)
    safe_labels, labelled = _labels_and_mask(labels)
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    per_sample = tf.where(labelled, per_sample, tf.zeros_like(per_sample))
    batch_size = tf.maximum(tf.cast(tf.shape(logits)[0], tf.float32), 1.0)
    return tf.reduce_sum(per_sample) / batch_size


def masked_accuracy(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Counts correct arg-max predictions among the samples with a label.

    Args:
      labels: int or float [M], −1 (any negative value) = no label.
      logits: float [M, K].

    Returns:
      `(num_correct, num_labelled)`, float32 scalars.
    """
    safe_labels, labelled = _labels_and_mask(labels)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int64)
    correct = tf.logical_and(labelled, tf.equal(predicted, safe_labels))
    return (tf.reduce_sum(tf.cast(correct, tf.float32)),
            tf.reduce_sum(tf.cast(labelled, tf.float32)))
