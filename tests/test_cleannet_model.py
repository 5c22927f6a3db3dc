"""CleanNet model (docs/originals.md#cleannet-model) against an independent NumPy forward pass from its weights."""

import numpy as np
import pytest
import tensorflow as tf

from cleannet.model import CleanNet

IMG_DIM = 12
NUM_REF = 5
BATCH = 3
# (encoder, layer attribute, fan_in, units) for every dense layer, from docs/originals.md#cleannet-model.
DENSE = (
    ("query_encoder", "hidden", IMG_DIM, 256),
    ("query_encoder", "embedding", 256, 128),
    ("query_encoder", "decoder_hidden", 128, 256),
    ("query_encoder", "reconstruction", 256, IMG_DIM),
    ("ref_set_encoder", "hidden0", IMG_DIM, 512),
    ("ref_set_encoder", "hidden", 512, 256),
    ("ref_set_encoder", "attention_key", 256, 256),
    ("ref_set_encoder", "embedding", 256, 128),
)


def _layer(model, encoder, name):
    return getattr(getattr(model, encoder), name)


def numpy_weights(model):
    """{(encoder, layer): (kernel, bias)} and the context vector, as float64 NumPy arrays."""
    weights = {(enc, name): (np.asarray(_layer(model, enc, name).kernel, np.float64),
                             np.asarray(_layer(model, enc, name).bias, np.float64))
               for enc, name, _, _ in DENSE}
    return weights, np.asarray(model.ref_set_encoder.context, np.float64)


def numpy_normalize(x, embed_norm):
    x = np.asarray(x, np.float64)
    if embed_norm == "log":
        return np.log(x + 1.0)
    if embed_norm in ("l2norm", "l2_norm"):
        return x / np.sqrt(np.maximum(np.sum(x ** 2, axis=-1, keepdims=True), 1e-12))
    return x


def numpy_forward(model, query, reference, embed_norm):
    """Independent forward pass: returns phi_s, v_q, phi_q, v_qr, alpha, cos (float64)."""
    w, context = numpy_weights(model)

    def dense(x, enc, name):
        kernel, bias = w[(enc, name)]
        return np.tanh(x @ kernel + bias)

    v_q = numpy_normalize(query, embed_norm)
    v_s = numpy_normalize(reference, embed_norm)
    phi_q = dense(dense(v_q, "query_encoder", "hidden"), "query_encoder", "embedding")
    v_qr = dense(dense(phi_q, "query_encoder", "decoder_hidden"), "query_encoder", "reconstruction")
    h = dense(dense(v_s, "ref_set_encoder", "hidden0"), "ref_set_encoder", "hidden")  # [B, R, 256]
    u = dense(h, "ref_set_encoder", "attention_key")
    logits = u @ context  # [B, R]
    alpha = np.exp(logits - logits.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    s = np.einsum("br,brk->bk", alpha, h)
    phi_s = dense(s, "ref_set_encoder", "embedding")
    norm = lambda x: x / np.sqrt(np.maximum(np.sum(x ** 2, axis=1, keepdims=True), 1e-12))
    cos = np.sum(norm(phi_s) * norm(phi_q), axis=1)
    return phi_s, v_q, phi_q, v_qr, alpha, cos


def _randomize(model, seed):
    """Non-zero biases and a larger context, so that a misplaced bias or context shows."""
    rng = np.random.default_rng(seed)
    for enc, name, _, units in DENSE:
        _layer(model, enc, name).bias.assign(rng.uniform(-0.3, 0.3, size=units).astype(np.float32))
    model.ref_set_encoder.context.assign(rng.normal(scale=1.5, size=256).astype(np.float32))


def _inputs(seed, batch=BATCH):
    rng = np.random.default_rng(seed)
    query = rng.uniform(0.0, 3.0, size=(batch, IMG_DIM)).astype(np.float32)
    reference = rng.uniform(0.0, 3.0, size=(batch, NUM_REF, IMG_DIM)).astype(np.float32)
    return query, reference


def _cosine(phi_s, phi_q):
    a = tf.math.l2_normalize(phi_s, axis=1)
    b = tf.math.l2_normalize(phi_q, axis=1)
    return tf.reduce_sum(a * b, axis=1).numpy()


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(3)
    net = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
    _randomize(net, 4)
    return net


def test_output_shapes(model):
    query, reference = _inputs(0, batch=4)
    phi_s, v_q, phi_q, v_qr = model((query, reference), training=False)
    assert tuple(phi_s.shape) == (4, 128)
    assert tuple(v_q.shape) == (4, IMG_DIM)
    assert tuple(phi_q.shape) == (4, 128)
    assert tuple(v_qr.shape) == (4, IMG_DIM)
    # 8 dense layers (kernel + bias) and the context vector, nothing else.
    assert len(model.trainable_variables) == 17


def test_attention_weights_sum_to_one_and_match_numpy(model):
    query, reference = _inputs(1)
    v_s = np.log(reference + 1.0)
    phi_s, alpha = model.ref_set_encoder(v_s, training=False, return_attention=True)
    alpha = alpha.numpy()
    assert alpha.shape == (BATCH, NUM_REF)
    assert np.all(alpha >= 0)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, atol=1e-6)
    expected_phi_s, _, _, _, expected_alpha, _ = numpy_forward(model, query, reference, "log")
    np.testing.assert_allclose(alpha, expected_alpha, atol=1e-5)
    np.testing.assert_allclose(phi_s.numpy(), expected_phi_s, atol=1e-5)
    # The attention is not uniform for these weights (it would hide a missing softmax input).
    assert np.ptp(expected_alpha) > 1e-3


@pytest.mark.parametrize("embed_norm", ["log", "l2norm", "l2_norm", "no_norm"])
def test_forward_matches_numpy(embed_norm):
    tf.keras.utils.set_random_seed(5)
    net = CleanNet(NUM_REF, IMG_DIM, embed_norm).build_variables()
    _randomize(net, 6)
    query, reference = _inputs(7)
    if embed_norm == "no_norm":
        query, reference = query - 1.5, reference - 1.5  # negative inputs too
    got = [t.numpy() for t in net((query, reference), training=False)]
    phi_s, v_q, phi_q, v_qr, _, cos = numpy_forward(net, query, reference, embed_norm)
    for name, g, e in zip(("phi_s", "v_q", "phi_q", "v_qr"), got, (phi_s, v_q, phi_q, v_qr)):
        np.testing.assert_allclose(g, e, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(_cosine(got[0], got[2]), cos, atol=1e-5)
    if embed_norm in ("l2norm", "l2_norm"):
        np.testing.assert_allclose(np.linalg.norm(got[1], axis=1), 1.0, atol=1e-6)


def test_unknown_embed_norm_refused():
    with pytest.raises(ValueError, match="embed_norm"):
        CleanNet(NUM_REF, IMG_DIM, "l1norm")


def test_dropout_only_in_training():
    tf.keras.utils.set_random_seed(8)
    net = CleanNet(NUM_REF, IMG_DIM, "log", dropout_rate=0.5).build_variables()
    query, reference = _inputs(9)
    first = net((query, reference), training=False)[0].numpy()
    second = net((query, reference), training=False)[0].numpy()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, numpy_forward(net, query, reference, "log")[0], atol=1e-5)
    trained = net((query, reference), training=True)[0].numpy()
    assert np.max(np.abs(trained - first)) > 1e-4
    # The default call is inference mode.
    np.testing.assert_array_equal(net((query, reference))[0].numpy(), first)
    # Dropout is on the reference path only: the query outputs do not change.
    np.testing.assert_array_equal(net((query, reference), training=True)[2].numpy(),
                                  net((query, reference), training=False)[2].numpy())


def test_regularization_loss_covers_kernels_only():
    tf.keras.utils.set_random_seed(10)
    net = CleanNet(NUM_REF, IMG_DIM, "log", weight_decay=0.01).build_variables()
    _randomize(net, 11)  # non-zero biases and context: they must not count
    expected = 0.01 * sum(np.sum(np.asarray(_layer(net, enc, name).kernel, np.float64) ** 2) / 2
                          for enc, name, _, _ in DENSE)
    np.testing.assert_allclose(float(net.regularization_loss()), expected, rtol=1e-5)
    without = CleanNet(NUM_REF, IMG_DIM, "log", weight_decay=0.0).build_variables()
    assert float(without.regularization_loss()) == 0.0


def test_initial_biases_zero_and_kernels_glorot_uniform():
    tf.keras.utils.set_random_seed(12)
    net = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
    for enc, name, fan_in, units in DENSE:
        layer = _layer(net, enc, name)
        kernel = np.asarray(layer.kernel)
        assert kernel.shape == (fan_in, units), name
        np.testing.assert_array_equal(np.asarray(layer.bias), np.zeros(units))
        limit = np.sqrt(6.0 / (fan_in + units))
        assert np.max(np.abs(kernel)) <= limit, (enc, name)
        assert np.max(np.abs(kernel)) > 0.9 * limit, (enc, name)  # uniform over the full range
        # Uniform on [-limit, limit]: standard deviation limit / sqrt(3).
        np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3.0), rtol=0.1)
    context = np.asarray(net.ref_set_encoder.context)
    assert context.shape == (256,)
    context_limit = np.sqrt(6.0 / (256 + 256))
    assert np.max(np.abs(context)) <= context_limit
    assert np.std(context) > 0.5 * context_limit / np.sqrt(3.0)


def test_encode_classes_and_queries_match_full_model(model):
    rng = np.random.default_rng(13)
    num_class = 4
    table = rng.uniform(0.0, 3.0, size=(num_class, NUM_REF, IMG_DIM)).astype(np.float32)
    class_ids = np.array([2, 0, 2, 3, 1, 3])
    query = rng.uniform(0.0, 3.0, size=(len(class_ids), IMG_DIM)).astype(np.float32)

    phi_s_table = model.encode_classes(table).numpy()
    assert phi_s_table.shape == (num_class, 128)
    v_q, phi_q, v_qr = (t.numpy() for t in model.encode_queries(query))
    fast = _cosine(phi_s_table[class_ids], phi_q)

    phi_s_full, v_q_full, phi_q_full, v_qr_full = model((query, table[class_ids]), training=False)
    np.testing.assert_allclose(fast, _cosine(phi_s_full, phi_q_full), atol=1e-6)
    np.testing.assert_allclose(v_q, v_q_full.numpy(), atol=1e-7)
    np.testing.assert_allclose(v_qr, v_qr_full.numpy(), atol=1e-6)
    np.testing.assert_allclose(fast, numpy_forward(model, query, table[class_ids], "log")[5], atol=1e-5)
