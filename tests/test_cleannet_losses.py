"""CleanNet losses and metrics (docs/originals.md#cleannet-losses) against values computed by hand or in NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from cleannet import losses, metrics


def _np(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def numpy_cosine(x1, x2):
    """Row-wise cosine with tf.math.l2_normalize's epsilon: x / sqrt(max(Σx², 1e-12))."""
    x1 = np.asarray(x1, np.float64)
    x2 = np.asarray(x2, np.float64)
    n1 = x1 / np.sqrt(np.maximum(np.sum(x1 ** 2, axis=1, keepdims=True), 1e-12))
    n2 = x2 / np.sqrt(np.maximum(np.sum(x2 ** 2, axis=1, keepdims=True), 1e-12))
    return np.sum(n1 * n2, axis=1)


def test_reconst_loss_is_sum_of_squared_differences_per_sample():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 7)).astype(np.float32)
    r = rng.normal(size=(4, 7)).astype(np.float32)
    got = _np(losses.reconst_loss(x, r))
    assert got.shape == (4,)
    np.testing.assert_allclose(got, np.sum((x.astype(np.float64) - r) ** 2, axis=1), rtol=1e-6)
    # By hand: (1-0)² + (2-4)² = 5.
    np.testing.assert_allclose(_np(losses.reconst_loss([[1.0, 2.0]], [[0.0, 4.0]])), [5.0], rtol=1e-7)


def test_cos_sim_loss_by_hand():
    vlabel = [1, 1, 0, 0, 0]
    cos = [0.8, -0.3, 0.5, 0.1, 0.05]
    # positives: 1 - cos; negatives: 5 * max(0, cos - 0.1).
    expected = [0.2, 1.3, 2.0, 0.0, 0.0]
    np.testing.assert_allclose(_np(losses.cos_sim_loss(vlabel, cos, 5.0)), expected, atol=1e-6)


def test_cos_sim_loss_margin_and_neg_weight():
    vlabel = [0, 0, 0, 1]
    cos = [0.5, 0.25, 0.2, 0.5]
    # margin 0.3, neg_weight 2: negatives 2*max(0, cos-0.3); the positive ignores both.
    expected = [0.4, 0.0, 0.0, 0.5]
    np.testing.assert_allclose(_np(losses.cos_sim_loss(vlabel, cos, 2.0, margin=0.3)), expected, atol=1e-6)


def test_unsup_cos_sim_loss_pseudo_label_threshold():
    cos = np.array([0.5, 0.1, 0.09, -0.2, 0.3], np.float32)
    # pseudo-label 1[cos >= 0.1] = [1, 1, 0, 0, 1]; with margin 0.1 a pseudo-negative has
    # cos < 0.1 so its hinge is 0.
    np.testing.assert_allclose(_np(losses.unsup_cos_sim_loss(cos, 5.0)), [0.5, 0.9, 0.0, 0.0, 0.7], atol=1e-6)
    # With margin 0.05 the pseudo-negative at 0.09 pays 5 * 0.04.
    np.testing.assert_allclose(_np(losses.unsup_cos_sim_loss(cos, 5.0, margin=0.05)),
                               [0.5, 0.9, 0.2, 0.0, 0.7], atol=1e-6)


def test_unsup_loss_has_no_gradient_through_pseudo_label():
    cos = tf.Variable([0.5, 0.07, -0.2, 0.3, 0.12])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.unsup_cos_sim_loss(cos, 5.0, margin=0.05))
    grad = tape.gradient(loss, cos)
    assert grad is not None
    # Pseudo-labels held constant: d/dcos = -p + nw * (1 - p) * 1[cos > margin].
    p = np.array([1, 0, 0, 1, 1], np.float32)
    hand = -p + 5.0 * (1 - p) * (cos.numpy() > 0.05)
    np.testing.assert_allclose(grad.numpy(), hand, atol=1e-6)
    constant = tf.constant(p)
    with tf.GradientTape() as tape:
        reference = tf.reduce_sum(losses.cos_sim_loss(constant, cos, 5.0, margin=0.05))
    np.testing.assert_allclose(grad.numpy(), tape.gradient(reference, cos).numpy(), atol=1e-7)


def _numpy_total(vlabel, cos, v_q, v_qr, vflag, neg_weight, beta, gamma):
    vlabel, cos, vflag = (np.asarray(a, np.float64) for a in (vlabel, cos, vflag))
    sup = vlabel * (1 - cos) + neg_weight * (1 - vlabel) * np.maximum(0, cos - 0.1)
    pseudo = (cos >= 0.1).astype(np.float64)
    unsup = pseudo * (1 - cos) + neg_weight * (1 - pseudo) * np.maximum(0, cos - 0.1)
    rec = np.sum((np.asarray(v_q, np.float64) - v_qr) ** 2, axis=1)
    return vflag * sup + beta * rec + gamma * (1 - vflag) * unsup


@pytest.fixture
def batch():
    rng = np.random.default_rng(1)
    return dict(
        vlabel=np.array([1, 0, 0, 1, 0, 0], np.float32),
        cos=np.array([0.6, 0.5, 0.5, -0.4, 0.02, 0.3], np.float32),
        v_q=rng.normal(size=(6, 5)).astype(np.float32),
        v_qr=rng.normal(size=(6, 5)).astype(np.float32),
        vflag=np.array([1, 1, 0, 0, 0, 1], np.float32),
    )


def _total(b, **kwargs):
    phi = np.zeros((len(b["cos"]), 3), np.float32)  # unused by the loss
    return _np(losses.total_loss(b["vlabel"], b["cos"], phi, b["v_q"], phi, b["v_qr"], b["vflag"],
                                 kwargs.pop("neg_weight", 5.0), **kwargs))


def test_total_loss_matches_numpy_with_default_and_custom_weights(batch):
    np.testing.assert_allclose(_total(batch), _numpy_total(**batch, neg_weight=5.0, beta=0.1, gamma=0.1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_total(batch, beta=0.3, gamma=0.7, neg_weight=2.0),
                               _numpy_total(**batch, neg_weight=2.0, beta=0.3, gamma=0.7), rtol=1e-5, atol=1e-6)


def test_total_loss_vflag_masking_by_hand():
    # One sample, vlabel 0, cos 0.5, zero reconstruction error:
    # supervised = 5 * 0.4 = 2.0; unsupervised (pseudo-label 1) = 0.5.
    zero = np.zeros((1, 2), np.float32)
    args = dict(phi_s=zero, v_q=zero, phi_q=zero, v_qr=zero, neg_weight=5.0, beta=0.1, gamma=0.3)
    verified = _np(losses.total_loss([0.0], [0.5], vflag=[1.0], **args))
    unverified = _np(losses.total_loss([0.0], [0.5], vflag=[0.0], **args))
    np.testing.assert_allclose(verified, [2.0], atol=1e-6)  # no unsupervised term
    np.testing.assert_allclose(unverified, [0.3 * 0.5], atol=1e-6)  # γ · unsupervised only
    # An unverified sample's (dummy) vlabel does not matter.
    np.testing.assert_allclose(_np(losses.total_loss([1.0], [0.5], vflag=[0.0], **args)), unverified, atol=1e-7)


def test_total_loss_reconstruction_weighted_by_beta_for_every_sample():
    v_q = np.array([[1.0, 2.0], [0.0, 0.0]], np.float32)
    v_qr = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)  # errors 5 and 2
    phi = np.zeros((2, 2), np.float32)
    # cos 1 for a positive: supervised 0; cos 0.05: pseudo-label 0, hinge 0 → unsupervised 0.
    got = _np(losses.total_loss([1.0, 0.0], [1.0, 0.05], phi, v_q, phi, v_qr, [1.0, 0.0], 5.0, beta=0.5))
    np.testing.assert_allclose(got, [2.5, 1.0], atol=1e-6)


def test_similarity_matches_numpy_cosine_and_zero_vector_gives_zero():
    rng = np.random.default_rng(2)
    x1 = rng.normal(size=(5, 9))
    x2 = rng.normal(size=(5, 9))
    x1[3] = 0.0
    x2[4] = 0.0
    got = _np(metrics.similarity(x1, x2))
    assert got.dtype == np.float32 and got.shape == (5,)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, numpy_cosine(x1, x2), atol=1e-6)
    assert got[3] == 0.0 and got[4] == 0.0
    # Scale invariance and sign, by hand.
    np.testing.assert_allclose(_np(metrics.similarity([[3.0, 0.0], [1.0, 1.0]], [[0.5, 0.0], [-2.0, -2.0]])),
                               [1.0, -1.0], atol=1e-6)


def test_accuracy_at_thresholds():
    vlabel = np.array([1, 0, 1, 0])
    cos = np.array([0.2, 0.05, 0.1, 0.3])
    # threshold 0.1: verdicts [1, 0, 1, 1] → 3 of 4 right (0.1 itself counts as correct label).
    np.testing.assert_allclose(_np(metrics.predict_label_correct(cos)), [1, 0, 1, 1])
    np.testing.assert_allclose(_np(metrics.accuracy(vlabel, cos)), 0.75, atol=1e-7)
    # threshold 0.25: verdicts [0, 0, 0, 1] → 1 of 4 right.
    np.testing.assert_allclose(_np(metrics.accuracy(vlabel, cos, threshold=0.25)), 0.25, atol=1e-7)
    # threshold -1: everything judged correct → share of positives.
    np.testing.assert_allclose(_np(metrics.accuracy(vlabel, cos, threshold=-1.0)), 0.5, atol=1e-7)


def test_numpy_float64_and_integer_inputs_accepted():
    vlabel = np.array([1, 0], np.int64)
    cos = np.array([0.5, 0.5], np.float64)
    x = np.ones((2, 3), np.float64)
    outputs = [
        losses.reconst_loss(x, x * 0.5),
        losses.cos_sim_loss(vlabel, cos, 5.0),
        losses.unsup_cos_sim_loss(cos, 5.0),
        losses.total_loss(vlabel, cos, x, x, x, x, np.array([1, 0]), 5.0),
        metrics.similarity(x, x),
        metrics.accuracy(vlabel, cos),
    ]
    for out in outputs:
        assert out.dtype == tf.float32
    np.testing.assert_allclose(_np(outputs[0]), [0.75, 0.75], atol=1e-6)
    np.testing.assert_allclose(_np(outputs[1]), [0.5, 2.0], atol=1e-6)
    np.testing.assert_allclose(_np(outputs[3]), [0.5, 0.1 * 0.5], atol=1e-6)
    np.testing.assert_allclose(_np(outputs[4]), [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(_np(outputs[5]), 0.5, atol=1e-7)
