"""NoisyLabelLoss and the masked losses against a NumPy implementation of docs/originals.md#noisy-label-model-the-loss-layer."""

import numpy as np
import pytest
import tensorflow as tf

from noise_model.model.layers import NoisyLabelLoss, masked_accuracy, masked_cross_entropy
from noisylabels.errors import InputError

FLT_MIN = np.finfo(np.float32).tiny


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def reference(clean_logits, ntype_logits, labels, matrix_c, update_noise_lr):
    """docs/originals.md#noisy-label-model-the-loss-layer written out directly in float64 probabilities, sample by sample."""
    clean_logits = np.asarray(clean_logits, np.float64)
    ntype_logits = np.asarray(ntype_logits, np.float64)
    m, num_classes = clean_logits.shape
    p_y, p_z = softmax(clean_logits), softmax(ntype_logits)
    q = np.zeros((m, num_classes, 3))
    log_s = np.zeros(m)
    loss = 0.0
    grad_clean = np.zeros_like(p_y)
    grad_ntype = np.zeros_like(p_z)
    for i in range(m):
        label = int(labels[i])
        if label < 0:
            continue
        lik = np.zeros((num_classes, 3))
        for y in range(num_classes):
            lik[y, 0] = 1.0 if y == label else 0.0
            lik[y, 1] = 0.0 if y == label else 1.0 / (num_classes - 1)
            lik[y, 2] = matrix_c[label, y]
        joint = p_y[i][:, None] * p_z[i][None, :] * lik
        s = joint.sum()
        q[i] = joint / s
        log_s[i] = np.log(s)
        entropy = -np.sum(q[i] * np.log(np.maximum(q[i], FLT_MIN)))
        loss += entropy - np.log(max(s, FLT_MIN))
        grad_clean[i] = (p_y[i] - q[i].sum(axis=1)) / m
        grad_ntype[i] = update_noise_lr * (p_z[i] - q[i].sum(axis=0)) / m
    return {"loss": loss / m, "p_y": p_y, "p_z": p_z, "q": q, "log_s": log_s,
            "grad_clean": grad_clean, "grad_ntype": grad_ntype}


def random_matrix_c(rng, num_classes, zero_fraction=0.0):
    matrix = rng.uniform(size=(num_classes, num_classes))
    matrix[rng.uniform(size=matrix.shape) < zero_fraction] = 0.0
    np.fill_diagonal(matrix, 0.0)
    sums = matrix.sum(axis=0, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def run_layer(layer, clean_logits, ntype_logits, labels, upstream=1.0):
    clean = tf.Variable(np.asarray(clean_logits, np.float32))
    ntype = tf.Variable(np.asarray(ntype_logits, np.float32))
    with tf.GradientTape() as tape:
        loss, p_y, p_z, q = layer([clean, ntype, labels], return_posteriors=True)
        scaled = upstream * loss
    grad_clean, grad_ntype = tape.gradient(scaled, [clean, ntype])
    return {"loss": loss.numpy(), "p_y": p_y.numpy(), "p_z": p_z.numpy(), "q": q.numpy(),
            "grad_clean": grad_clean.numpy(), "grad_ntype": grad_ntype.numpy()}


@pytest.mark.parametrize("update_noise_lr", [0.0, 0.1, 1.0])
def test_value_posteriors_and_gradients_match_numpy(update_noise_lr):
    rng = np.random.default_rng(1)
    m, num_classes = 12, 5
    clean_logits = rng.normal(scale=2.0, size=(m, num_classes))
    ntype_logits = rng.normal(scale=2.0, size=(m, 3))
    labels = rng.integers(0, num_classes, size=m)
    labels[[1, 4, 9]] = -1
    matrix_c = random_matrix_c(rng, num_classes)
    layer = NoisyLabelLoss(matrix_c, update_noise_lr=update_noise_lr)

    got = run_layer(layer, clean_logits, ntype_logits, labels, upstream=3.0)
    want = reference(clean_logits, ntype_logits, labels, matrix_c, update_noise_lr)

    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["p_y"], want["p_y"], atol=1e-6)
    np.testing.assert_allclose(got["p_z"], want["p_z"], atol=1e-6)
    np.testing.assert_allclose(got["q"], want["q"], atol=1e-6)
    np.testing.assert_allclose(got["grad_clean"], 3.0 * want["grad_clean"], atol=1e-6)
    np.testing.assert_allclose(got["grad_ntype"], 3.0 * want["grad_ntype"], atol=1e-6)
    # Unlabelled samples: no posterior, zero gradient rows.
    assert np.all(got["q"][[1, 4, 9]] == 0)
    assert np.all(got["grad_clean"][[1, 4, 9]] == 0)
    if update_noise_lr == 0.0:
        assert np.all(got["grad_ntype"] == 0)


def test_gradients_are_those_of_the_negative_log_likelihood():
    """EM: the layer's gradients equal d/dlogits of −(1/M) Σ log p(ỹ|x) (finite differences)."""
    rng = np.random.default_rng(2)
    m, num_classes = 6, 4
    clean_logits = rng.normal(size=(m, num_classes))
    ntype_logits = rng.normal(size=(m, 3))
    labels = np.array([0, 3, -1, 2, 1, 1])
    matrix_c = random_matrix_c(rng, num_classes)

    def neg_log_likelihood(clean, ntype):
        log_s = reference(clean, ntype, labels, matrix_c, 1.0)["log_s"]
        return -np.sum(log_s[labels >= 0]) / m

    eps = 1e-6
    numeric_clean = np.zeros_like(clean_logits)
    for index in np.ndindex(clean_logits.shape):
        plus, minus = clean_logits.copy(), clean_logits.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric_clean[index] = (neg_log_likelihood(plus, ntype_logits)
                                - neg_log_likelihood(minus, ntype_logits)) / (2 * eps)
    numeric_ntype = np.zeros_like(ntype_logits)
    for index in np.ndindex(ntype_logits.shape):
        plus, minus = ntype_logits.copy(), ntype_logits.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric_ntype[index] = (neg_log_likelihood(clean_logits, plus)
                                - neg_log_likelihood(clean_logits, minus)) / (2 * eps)

    got = run_layer(NoisyLabelLoss(matrix_c), clean_logits, ntype_logits, labels)
    np.testing.assert_allclose(got["grad_clean"], numeric_clean, atol=2e-6)
    np.testing.assert_allclose(got["grad_ntype"], numeric_ntype, atol=2e-6)


def test_extreme_logits_stay_finite():
    rng = np.random.default_rng(3)
    m, num_classes = 8, 4
    clean_logits = rng.choice([-1e4, 1e4], size=(m, num_classes))
    ntype_logits = rng.choice([-1e4, 1e4], size=(m, 3))
    # Sample 0: the clean net is certain of class 1, the label says 0, noise net says z=0:
    # every term of S is exp(-2e4) in float32, yet q must be a distribution.
    clean_logits[0] = [-1e4, 1e4, -1e4, -1e4]
    ntype_logits[0] = [1e4, -1e4, -1e4]
    labels = np.array([0, 1, 2, 3, -1, 0, 1, 2])
    got = run_layer(NoisyLabelLoss(random_matrix_c(rng, num_classes)),
                    clean_logits, ntype_logits, labels)
    for key, value in got.items():
        assert np.all(np.isfinite(value)), key
    np.testing.assert_allclose(got["q"][labels >= 0].sum(axis=(1, 2)), 1.0, atol=1e-5)
    # log S is about -2e4: the floored −log S (−log FLT_MIN ≈ 87.3) dominates the value.
    assert got["loss"] > 87.0 / m


def test_all_unlabelled_batch_gives_zero_loss_and_gradients():
    rng = np.random.default_rng(4)
    got = run_layer(NoisyLabelLoss(random_matrix_c(rng, 3)), rng.normal(size=(5, 3)),
                    rng.normal(size=(5, 3)), -np.ones(5, np.int64))
    assert got["loss"] == 0.0
    assert np.all(got["grad_clean"] == 0) and np.all(got["grad_ntype"] == 0)
    assert np.all(np.isfinite(got["q"]))


def test_matrix_c_with_zero_entries_matches_numpy():
    rng = np.random.default_rng(5)
    m, num_classes = 10, 6
    matrix_c = random_matrix_c(rng, num_classes, zero_fraction=0.6)
    matrix_c[:, 2] = 0.0  # a class with no confusing noise at all
    clean_logits = rng.normal(scale=3.0, size=(m, num_classes))
    ntype_logits = rng.normal(scale=3.0, size=(m, 3))
    labels = rng.integers(0, num_classes, size=m)
    got = run_layer(NoisyLabelLoss(matrix_c), clean_logits, ntype_logits, labels)
    want = reference(clean_logits, ntype_logits, labels, matrix_c, 1.0)
    for key in ("loss", "q", "grad_clean", "grad_ntype"):
        assert np.all(np.isfinite(got[key]))
        np.testing.assert_allclose(got[key], want[key], atol=1e-6, rtol=1e-5)


def test_float_labels_and_graph_mode_agree_with_eager_int_labels():
    rng = np.random.default_rng(6)
    clean_logits = rng.normal(size=(7, 4)).astype(np.float32)
    ntype_logits = rng.normal(size=(7, 3)).astype(np.float32)
    labels = np.array([2, -1, 0, 3, 1, -1, 2])
    layer = NoisyLabelLoss(random_matrix_c(rng, 4), update_noise_lr=0.5)
    eager = run_layer(layer, clean_logits, ntype_logits, labels)
    floats = run_layer(layer, clean_logits, ntype_logits, labels.astype(np.float32))

    @tf.function
    def graph_step(clean, ntype, noisy):
        with tf.GradientTape() as tape:
            tape.watch([clean, ntype])
            loss = layer([clean, ntype, noisy])
        return (loss,) + tuple(tape.gradient(loss, [clean, ntype]))

    graph = graph_step(tf.constant(clean_logits), tf.constant(ntype_logits),
                       tf.constant(labels.astype(np.float32)))
    for key in ("loss", "grad_clean", "grad_ntype"):
        np.testing.assert_allclose(floats[key], eager[key], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(graph[0].numpy(), eager["loss"], rtol=1e-6)
    np.testing.assert_allclose(graph[1].numpy(), eager["grad_clean"], atol=1e-7)
    np.testing.assert_allclose(graph[2].numpy(), eager["grad_ntype"], atol=1e-7)


def test_update_noise_lr_can_be_changed_and_overridden():
    rng = np.random.default_rng(7)
    clean_logits, ntype_logits = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    labels = np.array([0, 1, 2, 1])
    layer = NoisyLabelLoss(random_matrix_c(rng, 3))
    full = run_layer(layer, clean_logits, ntype_logits, labels)["grad_ntype"]
    assert np.abs(full).max() > 1e-3
    layer.update_noise_lr = 0.0
    assert np.all(run_layer(layer, clean_logits, ntype_logits, labels)["grad_ntype"] == 0)
    ntype = tf.Variable(ntype_logits.astype(np.float32))
    with tf.GradientTape() as tape:
        loss = layer([tf.constant(clean_logits, tf.float32), ntype, labels],
                     update_noise_lr=tf.constant(0.25))
    np.testing.assert_allclose(tape.gradient(loss, ntype).numpy(), 0.25 * full, atol=1e-7)


def test_matrix_c_is_a_validated_non_trainable_weight():
    matrix_c = np.full((3, 3), 0.5)
    np.fill_diagonal(matrix_c, 0.0)
    layer = NoisyLabelLoss(matrix_c)
    assert [w.name for w in layer.non_trainable_weights] == ["matrix_c"]
    assert not layer.trainable_weights
    np.testing.assert_array_equal(layer.matrix_c.numpy(), matrix_c.astype(np.float32))
    for bad in (np.ones((3, 4)), -matrix_c, np.full((3, 3), np.nan), np.ones((1, 1))):
        with pytest.raises(InputError):
            NoisyLabelLoss(bad)


def test_labels_out_of_range_are_rejected():
    layer = NoisyLabelLoss(np.full((3, 3), 0.5) - 0.5 * np.eye(3))
    logits, ntype = tf.zeros([2, 3]), tf.zeros([2, 3])
    with pytest.raises(InputError, match="out of range"):
        layer([logits, ntype, np.array([0, 3])])
    graph_call = tf.function(lambda labels: layer([logits, ntype, labels]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        graph_call(tf.constant([0, 3]))


def test_masked_cross_entropy_and_accuracy():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [3.0, 2.0, 1.0], [0.0, 0.0, 5.0]],
                      np.float32)
    labels = np.array([0, -1, 1, 2])
    log_p = np.log(softmax(logits.astype(np.float64)))
    want = -(log_p[0, 0] + log_p[2, 1] + log_p[3, 2]) / 4  # divided by the whole batch
    np.testing.assert_allclose(masked_cross_entropy(labels, logits).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(
        masked_cross_entropy(labels.astype(np.float32), logits).numpy(), want, rtol=1e-6)
    correct, labelled = masked_accuracy(labels, logits)
    assert (correct.numpy(), labelled.numpy()) == (2.0, 3.0)  # sample 2 predicts 0, not 1
    assert masked_cross_entropy(-np.ones(4), logits).numpy() == 0.0
    assert tuple(t.numpy() for t in masked_accuracy(-np.ones(4), logits)) == (0.0, 0.0)
