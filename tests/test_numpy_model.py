"""cleannet.numpy_model: the NumPy inference path against the Keras CleanNet it copies, and
cleannet.checkpoints.load_inference_model (a checkpoint read without TensorFlow)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cleannet.checkpoints import load_inference_model, load_trained_model, make_checkpoint
from cleannet.model import CleanNet
from cleannet.numpy_model import CONTEXT, DENSE_LAYERS, NumpyCleanNet, cosine_similarity
from noisylabels.errors import DamagedCheckpointError, InputError
from process_control import ROOT
from test_scoring import IMG_DIM, NUM_REF, numpy_similarities, random_data, random_model


@pytest.mark.parametrize("embed_norm", ["log", "l2norm", "l2_norm", "no_norm"])
def test_forward_pass_equals_the_keras_model(embed_norm):
    model = random_model(embed_norm)
    features, class_ids, reference = random_data(31)
    numpy_model = NumpyCleanNet.from_keras(model)
    _, keras_phi_q, _ = model.encode_queries(tf.constant(features))
    keras_phi_s = model.encode_classes(tf.constant(reference))
    np.testing.assert_allclose(numpy_model.encode_queries(features), keras_phi_q.numpy(), atol=1e-5)
    np.testing.assert_allclose(numpy_model.encode_classes(reference), keras_phi_s.numpy(), atol=1e-4)
    assert numpy_model.encode_queries(features).dtype == np.float32
    # And the similarity against the float64 forward pass written out in tests/test_scoring.py.
    got = cosine_similarity(numpy_model.encode_classes(reference)[class_ids], numpy_model.encode_queries(features))
    np.testing.assert_allclose(got, numpy_similarities(model, features, class_ids, reference, embed_norm), atol=5e-6)


def test_the_weights_are_a_copy():
    model = random_model("log")
    features, _, _ = random_data(3)
    numpy_model = NumpyCleanNet.from_keras(model)
    before = numpy_model.encode_queries(features)
    model.query_encoder.hidden.kernel.assign(np.zeros(model.query_encoder.hidden.kernel.shape, np.float32))
    np.testing.assert_array_equal(numpy_model.encode_queries(features), before)


def _weights(model):
    numpy_model = NumpyCleanNet.from_keras(model)
    weights = {key: pair for key, pair in numpy_model.dense.items()}
    weights[CONTEXT] = numpy_model.context
    return weights


@pytest.mark.parametrize("damage,message", [
    ("missing_layer", "no weights for ref_set_encoder/attention_key"),
    ("short_kernel", "does not take 16 inputs"),
    ("bias_shape", "do not make a dense layer"),
    ("context_shape", "context has shape"),
    ("nan", "NaN or infinite"),
])
def test_weights_that_do_not_fit_are_refused(damage, message):
    weights = _weights(random_model("log"))
    key = ("ref_set_encoder", "attention_key")
    if damage == "missing_layer":
        del weights[key]
    elif damage == "short_kernel":
        weights[("query_encoder", "hidden")] = (np.zeros([15, 256], np.float32), np.zeros([256], np.float32))
    elif damage == "bias_shape":
        weights[key] = (weights[key][0], np.zeros([3], np.float32))
    elif damage == "context_shape":
        weights[CONTEXT] = np.zeros([5], np.float32)
    else:
        kernel = weights[key][0].copy()
        kernel[1, 2] = np.nan
        weights[key] = (kernel, weights[key][1])
    with pytest.raises(ValueError, match=message):
        NumpyCleanNet(weights, IMG_DIM, NUM_REF, "log")


def _save(model, directory, step=7):
    return make_checkpoint(model, tf.Variable(step, dtype=tf.int64)).save(os.path.join(directory, "ckpt"))


def test_load_inference_model_equals_the_restored_keras_model(tmp_path):
    model = random_model("l2norm")
    path = _save(model, str(tmp_path))
    numpy_model, step, got_path = load_inference_model(str(tmp_path), IMG_DIM, NUM_REF, "l2norm")
    keras_model, keras_step, _ = load_trained_model(str(tmp_path), IMG_DIM, NUM_REF, "l2norm")
    assert (step, got_path) == (7, path) and keras_step == 7
    expected = NumpyCleanNet.from_keras(keras_model)
    for key in DENSE_LAYERS:
        for got, want in zip(numpy_model.dense[key], expected.dense[key]):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(numpy_model.context, expected.context)


def test_weights_stored_under_the_optimizers_keys_are_found(tmp_path):
    """With an optimizer in the checkpoint (as train.py saves it), TensorFlow stores each
    weight once, under the optimizer's key; the object graph leads to it."""
    import keras

    from noisylabels.tensor_bundle import CheckpointReader

    model = random_model("log")
    optimizer = keras.optimizers.SGD(momentum=0.9)
    optimizer.build(model.trainable_variables)
    path = make_checkpoint(model, tf.Variable(5, dtype=tf.int64), optimizer).save(os.path.join(str(tmp_path), "ckpt"))
    assert "model/query_encoder/hidden/_kernel/.ATTRIBUTES/VARIABLE_VALUE" not in CheckpointReader(path).names()
    numpy_model, step, _ = load_inference_model(str(tmp_path), IMG_DIM, NUM_REF, "log")
    expected = NumpyCleanNet.from_keras(model)
    assert step == 5
    for key in DENSE_LAYERS:
        for got, want in zip(numpy_model.dense[key], expected.dense[key]):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(numpy_model.context, expected.context)


def test_load_inference_model_refuses_other_settings_and_damage(tmp_path):
    path = _save(random_model("log"), str(tmp_path))
    with pytest.raises(InputError, match="made with img_dim=16 but --img_dim=32"):
        load_inference_model(str(tmp_path), 32, NUM_REF, "log")
    with pytest.raises(InputError, match="embed_norm=log but --embed_norm=no_norm"):
        load_inference_model(str(tmp_path), IMG_DIM, NUM_REF, "no_norm")
    data = path + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(DamagedCheckpointError):
        load_inference_model(str(tmp_path), IMG_DIM, NUM_REF, "log")


def test_load_inference_model_refuses_a_checkpoint_of_another_model(tmp_path):
    checkpoint = tf.train.Checkpoint(global_step=tf.Variable(3, dtype=tf.int64), other=tf.Variable([1.0]))
    checkpoint.save(os.path.join(str(tmp_path), "ckpt"))
    with pytest.raises(InputError, match="does not fit this model .no variable model/query_encoder/hidden/_kernel"):
        load_inference_model(str(tmp_path), IMG_DIM, NUM_REF, "log")


def test_loading_and_scoring_do_not_import_tensorflow(tmp_path):
    model = CleanNet(NUM_REF, IMG_DIM).build_variables()
    _save(model, str(tmp_path))
    _, class_ids, reference = random_data(4)
    np.save(tmp_path / "ref.npy", reference)
    code = ("import sys, numpy as np\n"
            "from cleannet.checkpoints import load_inference_model\n"
            "from cleannet.scoring import ClassEmbeddingScorer\n"
            "model, step, _ = load_inference_model(sys.argv[1], %d, %d, 'log')\n"
            "scorer = ClassEmbeddingScorer(model, np.load(sys.argv[1] + '/ref.npy'))\n"
            "scores = scorer.score_against_all(np.ones((4, %d), np.float32), np.array(%r))\n"
            "print(step, len(scores), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
            % (IMG_DIM, NUM_REF, IMG_DIM, class_ids.tolist()))
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["7", "4", "False", "False"]


def test_a_layout_the_reader_does_not_implement_falls_back_to_tensorflows_reader(tmp_path, monkeypatch):
    from noisylabels import tensor_bundle

    model = random_model("log")
    _save(model, str(tmp_path))

    def unsupported(prefix):
        raise tensor_bundle.UnsupportedCheckpointError("compressed index blocks", path=prefix)

    monkeypatch.setattr(tensor_bundle, "CheckpointReader", unsupported)
    numpy_model, step, _ = load_inference_model(str(tmp_path), IMG_DIM, NUM_REF, "log")
    assert step == 7
    np.testing.assert_array_equal(numpy_model.context, model.ref_set_encoder.context.numpy())
