"""cleannet.numpy_model: the NumPy inference path against the Keras CleanNet it copies, and
cleannet.checkpoints.load_inference_model (the inference file read without TensorFlow; a
checkpoint without it restored with TensorFlow)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cleannet.checkpoints import (INFERENCE_FILE, load_inference_model, load_trained_model, make_checkpoint,
                                  read_model_config, write_inference_file)
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

    model = random_model("log")
    optimizer = keras.optimizers.SGD(momentum=0.9)
    optimizer.build(model.trainable_variables)
    path = make_checkpoint(model, tf.Variable(5, dtype=tf.int64), optimizer).save(os.path.join(str(tmp_path), "ckpt"))
    assert "model/query_encoder/hidden/_kernel/.ATTRIBUTES/VARIABLE_VALUE" not in dict(tf.train.list_variables(path))
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
    with pytest.raises(InputError, match="does not fit this model"):
        load_inference_model(str(tmp_path), IMG_DIM, NUM_REF, "log")


def test_loading_and_scoring_do_not_import_tensorflow(tmp_path):
    model = CleanNet(NUM_REF, IMG_DIM).build_variables()
    write_inference_file(NumpyCleanNet.from_keras(model), _save(model, str(tmp_path)), 7)
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


def _assert_same_weights(got, expected):
    for key in DENSE_LAYERS:
        for got_array, want in zip(got.dense[key], expected.dense[key]):
            np.testing.assert_array_equal(got_array, want)
    np.testing.assert_array_equal(got.context, expected.context)


def test_the_inference_file_gives_the_checkpoints_weights_and_configuration(tmp_path):
    """Written beside the checkpoint, read back without being told img_dim, num_ref or
    embed_norm: the same weights and step as TensorFlow's restore; a value given that
    disagrees with it is refused."""
    model = random_model("l2_norm")
    path = _save(model, str(tmp_path), step=9)
    written = write_inference_file(NumpyCleanNet.from_keras(model), path, 9)
    assert written == os.path.join(str(tmp_path), INFERENCE_FILE)
    with np.load(written, allow_pickle=False) as npz:  # plain arrays, no pickle
        assert str(npz["checkpoint"]) == "ckpt-1" and int(npz["global_step"]) == 9
    numpy_model, step, got_path = load_inference_model(str(tmp_path))
    assert (step, got_path, numpy_model.img_dim, numpy_model.num_ref, numpy_model.embed_norm) == (
        9, path, IMG_DIM, NUM_REF, "l2norm")
    keras_model, _, _ = load_trained_model(str(tmp_path))
    _assert_same_weights(numpy_model, NumpyCleanNet.from_keras(keras_model))
    assert read_model_config(str(tmp_path)) == ({"img_dim": IMG_DIM, "num_ref": NUM_REF, "embed_norm": "l2norm"}, path)
    with pytest.raises(InputError, match="made with num_ref=%d but --num_ref=%d" % (NUM_REF, NUM_REF + 1)):
        load_inference_model(str(tmp_path), IMG_DIM, NUM_REF + 1, None)


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "not_a_zip"])
def test_a_damaged_inference_file_is_refused_naming_it(tmp_path, damage):
    model = random_model("log")
    written = write_inference_file(NumpyCleanNet.from_keras(model), _save(model, str(tmp_path)), 7)
    data = bytearray(open(written, "rb").read())
    if damage == "flipped_byte":  # inside the first member's data (a stored, uncompressed .npy)
        data[200] ^= 0x10
    elif damage == "truncated":
        data = data[:len(data) // 2]
    else:
        data = bytearray(b"not a zip file at all")
    open(written, "wb").write(bytes(data))
    with pytest.raises(DamagedCheckpointError) as err:
        load_inference_model(str(tmp_path))
    assert str(err.value).startswith(written + ": damaged inference file"), str(err.value)
    assert "\n" not in str(err.value)


def test_an_inference_file_of_an_older_checkpoint_is_not_used(tmp_path):
    """A newer checkpoint without its inference file (a save of older code) is restored with
    TensorFlow: the weights are the newer checkpoint's."""
    old, new = random_model("log", seed=0), random_model("log", seed=1)
    write_inference_file(NumpyCleanNet.from_keras(old), _save(old, str(tmp_path), step=1), 1)
    manager = tf.train.CheckpointManager(make_checkpoint(new, tf.Variable(2, dtype=tf.int64)), str(tmp_path), 3)
    manager.save(checkpoint_number=2)
    numpy_model, step, path = load_inference_model(str(tmp_path))
    assert (step, os.path.basename(path)) == (2, "ckpt-2")
    _assert_same_weights(numpy_model, NumpyCleanNet.from_keras(new))
