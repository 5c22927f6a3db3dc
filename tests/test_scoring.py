"""cleannet.scoring: the class-embedding cache against an independent NumPy CleanNet forward pass."""

import numpy as np
import pytest

import keras

from cleannet.model import CleanNet
from cleannet.numpy_model import NumpyCleanNet
from cleannet.scoring import ClassEmbeddingScorer, score_per_sample

NUM_CLASSES, NUM_REF, IMG_DIM = 5, 4, 16


def _dense(layer, x):
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    return np.tanh(x @ kernel + bias)


def _normalize(x, embed_norm):
    if embed_norm == "log":
        return np.log(x + 1.0)
    if embed_norm in ("l2norm", "l2_norm"):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    return x


def numpy_similarities(model, features, class_ids, reference, embed_norm):
    """docs/originals.md#cleannet-model in NumPy (float64), every sample's reference set encoded on its own."""
    q = model.query_encoder
    r = model.ref_set_encoder
    v_q = _normalize(np.asarray(features, np.float64), embed_norm)
    phi_q = _dense(q.embedding, _dense(q.hidden, v_q))
    context = np.asarray(r.context.numpy(), np.float64)
    out = []
    for i, class_id in enumerate(class_ids):
        v_s = _normalize(np.asarray(reference[class_id], np.float64), embed_norm)  # [R, h]
        h = _dense(r.hidden, _dense(r.hidden0, v_s))  # no dropout in inference
        logits = _dense(r.attention_key, h) @ context  # [R]
        alpha = np.exp(logits - logits.max())
        alpha /= alpha.sum()
        phi_s = _dense(r.embedding, alpha @ h)
        out.append(phi_s @ phi_q[i] / (np.linalg.norm(phi_s) * np.linalg.norm(phi_q[i])))
    return np.array(out)


def random_model(embed_norm, dropout_rate=0.0, seed=0):
    """A CleanNet with random weights AND biases (zero biases would hide bias mistakes)."""
    keras.utils.set_random_seed(seed)
    model = CleanNet(NUM_REF, IMG_DIM, embed_norm, dropout_rate=dropout_rate).build_variables()
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def scorer_of(model, reference, **kwargs):
    """ClassEmbeddingScorer on the NumPy inference path of Keras CleanNet `model`."""
    return ClassEmbeddingScorer(NumpyCleanNet.from_keras(model), reference, **kwargs)


def random_data(n, seed=1):
    rng = np.random.default_rng(seed)
    reference = rng.random((NUM_CLASSES, NUM_REF, IMG_DIM), dtype=np.float32)
    features = rng.random((n, IMG_DIM), dtype=np.float32)
    class_ids = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    return features, class_ids, reference


@pytest.mark.parametrize("embed_norm,batch_size", [("log", 1), ("log", 8), ("l2norm", 5), ("no_norm", 64)])
def test_cache_matches_numpy_per_sample(embed_norm, batch_size):
    model = random_model(embed_norm)
    features, class_ids, reference = random_data(37)  # 37: prime, so batches of 5 and 8 leave a remainder; 64 > 37
    expected = numpy_similarities(model, features, class_ids, reference, embed_norm)
    scorer = scorer_of(model, reference, class_chunk=2)  # cache filled in 3 chunks
    got = scorer.score(features, class_ids, batch_size=batch_size)
    assert got.shape == (37,)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert scorer.num_classes == NUM_CLASSES
    assert len(set(np.round(expected, 4))) > 10  # the similarities really differ per sample


def test_per_sample_path_matches_cache_and_numpy():
    model = random_model("log")
    features, class_ids, reference = random_data(23)
    expected = numpy_similarities(model, features, class_ids, reference, "log")
    per_sample = score_per_sample(model, features, class_ids, reference)
    cached = scorer_of(model, reference).score(features, class_ids, batch_size=5)
    np.testing.assert_allclose(per_sample, expected, atol=2e-5)
    np.testing.assert_allclose(cached, per_sample, atol=2e-5)


def test_cache_is_inference_mode_despite_dropout():
    """Dropout in the reference encoder is training-only: the cache must not apply it."""
    model = random_model("log", dropout_rate=0.5)
    features, class_ids, reference = random_data(19)
    expected = numpy_similarities(model, features, class_ids, reference, "log")
    scores = [scorer_of(model, reference).score(features, class_ids, batch_size=7) for _ in range(2)]
    np.testing.assert_allclose(scores[0], expected, atol=2e-5)
    np.testing.assert_array_equal(scores[0], scores[1])


def test_similarity_depends_on_the_class():
    """The same feature scored against two classes gives each class's own similarity."""
    model = random_model("log")
    features, _, reference = random_data(1)
    two = np.repeat(features, 2, axis=0)
    class_ids = np.array([0, 3], np.int32)
    got = scorer_of(model, reference).score(two, class_ids)
    expected = numpy_similarities(model, two, class_ids, reference, "log")
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert abs(expected[0] - expected[1]) > 1e-3


def test_empty_input():
    model = random_model("log")
    _, _, reference = random_data(1)
    got = scorer_of(model, reference).score(np.zeros((0, IMG_DIM), np.float32), np.zeros([0], np.int32))
    assert got.shape == (0,)
