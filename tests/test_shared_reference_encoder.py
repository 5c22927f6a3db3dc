"""CleanNet.call_by_class: the reference encoder shared across the samples of a class gives
the values and gradients of the per-sample computation, with and without dropout."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cleannet.model import CleanNet
from cleannet.trainer import TrainConfig, Trainer
from test_cleannet_model import numpy_normalize  # independent NumPy normalisation
from test_mixed_precision import tables as feature_tables  # small in-memory FeatureTables

IMG_DIM = 12
NUM_REF = 4
NUM_CLASSES = 6
CLASS_IDS = [3, 1, 3, 0, 1, 3, 5, 5, 1, 3]  # repeated classes, class 2 and 4 absent


def _inputs(seed):
    rng = np.random.default_rng(seed)
    table = tf.constant(rng.random((NUM_CLASSES, NUM_REF, IMG_DIM)), tf.float32)
    query = tf.constant(rng.random((len(CLASS_IDS), IMG_DIM)), tf.float32)
    return query, table, tf.constant(CLASS_IDS, tf.int32)


def _randomize(net, seed):
    """Non-zero biases, so that every parameter matters."""
    rng = np.random.default_rng(seed)
    for variable in net.trainable_variables:
        variable.assign(rng.uniform(-0.3, 0.3, variable.shape).astype(np.float32))


def _outputs_and_gradients(net, share, query, table, class_ids, training, normalized_table=None):
    """call_by_class outputs and the gradients of a loss using all four outputs."""
    net.share_reference_encoder = share
    with tf.GradientTape() as tape:
        outputs = net.call_by_class(query, table, class_ids, training=training, normalized_table=normalized_table)
        loss = sum(tf.reduce_sum(tf.sin(3.0 * (k + 1) * tf.cast(out, tf.float32))) for k, out in enumerate(outputs))
    gradients = tape.gradient(loss, net.trainable_variables)
    return [out.numpy() for out in outputs], [g.numpy() for g in gradients]


def _assert_same(shared, per_sample):
    for got, expected in zip(shared[0], per_sample[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    for got, expected in zip(shared[1], per_sample[1]):
        # Sums over the samples of a class are taken in another order: float32 rounding of
        # the largest terms.
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("embed_norm", ["log", "l2norm", "no_norm"])
@pytest.mark.parametrize("training", [True, False])
def test_without_dropout_values_and_gradients_match_per_sample(embed_norm, training):
    keras.utils.set_random_seed(1)
    net = CleanNet(NUM_REF, IMG_DIM, embed_norm).build_variables()
    _randomize(net, 2)
    inputs = _inputs(3)
    per_sample = _outputs_and_gradients(net, False, *inputs, training)
    shared = _outputs_and_gradients(net, True, *inputs, training)
    _assert_same(shared, per_sample)
    # The same with the table normalised once by the caller (NumPy here).
    normalized = tf.constant(numpy_normalize(inputs[1].numpy(), embed_norm), tf.float32)
    _assert_same(_outputs_and_gradients(net, True, *inputs, training, normalized_table=normalized), per_sample)
    # The per-sample path is the plain model on each sample's gathered reference set.
    query, table, class_ids = inputs
    plain = net((query, tf.gather(table, class_ids)), training=training)
    for got, expected in zip(per_sample[0], plain):
        np.testing.assert_array_equal(got, expected.numpy())
    # Every weight gets a gradient (none is cut off by the gather).
    assert all(np.abs(g).max() > 0 for g in shared[1])


def test_with_dropout_the_same_masks_give_the_same_values_and_gradients():
    """Keras draws dropout masks from the layer's seed-generator state: replaying that state
    gives both paths the same per-sample mask, so they must agree exactly (up to rounding)."""
    keras.utils.set_random_seed(4)
    net = CleanNet(NUM_REF, IMG_DIM, "log", dropout_rate=0.5).build_variables()
    _randomize(net, 5)
    inputs = _inputs(6)
    seed_state = net.ref_set_encoder.dropout.seed_generator.state
    before = seed_state.numpy()
    per_sample = _outputs_and_gradients(net, False, *inputs, True)
    seed_state.assign(before)
    shared = _outputs_and_gradients(net, True, *inputs, True)
    _assert_same(shared, per_sample)
    seed_state.assign(before)
    normalized = tf.constant(numpy_normalize(inputs[1].numpy(), "log"), tf.float32)
    _assert_same(_outputs_and_gradients(net, True, *inputs, True, normalized_table=normalized), per_sample)
    # Dropout did act: the inference-mode outputs differ.
    inference = net.call_by_class(*inputs, training=False)[0].numpy()
    assert np.abs(inference - shared[0][0]).max() > 1e-3


def test_with_dropout_each_sample_of_a_class_gets_its_own_mask():
    keras.utils.set_random_seed(7)
    net = CleanNet(NUM_REF, IMG_DIM, "log", dropout_rate=0.5).build_variables()
    query, table, _ = _inputs(8)
    same_class = tf.constant([2] * 6, tf.int32)
    phi_s = net.call_by_class(query[:6], table, same_class, training=True)[0].numpy()
    assert min(np.abs(phi_s[i] - phi_s[j]).max() for i in range(6) for j in range(i)) > 1e-4
    phi_s = net.call_by_class(query[:6], table, same_class, training=False)[0].numpy()
    np.testing.assert_array_equal(phi_s, np.repeat(phi_s[:1], 6, axis=0))


def test_mixed_precision_outputs_match_per_sample():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(9)
        net = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
        inputs = _inputs(10)
        net.share_reference_encoder = False
        per_sample = net.call_by_class(*inputs, training=True)
        net.share_reference_encoder = True
        shared = net.call_by_class(*inputs, training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for got, expected in zip(shared, per_sample):
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got.numpy().astype(np.float32), expected.numpy().astype(np.float32),
                                   atol=2e-3)


def test_train_step_uses_the_shared_encoder_and_matches_per_sample(tmp_path):
    tables = feature_tables(np.random.default_rng(11), img_dim=8, classes=5, num_ref=3)
    sup, unsup = tf.constant([0, 1, 2, 3, 4, 5], tf.int64), tf.constant([0, 7, 14, 21, 28, 29], tf.int64)
    weights = {}
    for share in (True, False):
        keras.utils.set_random_seed(12)
        config = TrainConfig(img_dim=8, num_ref=3, batch_size_sup=6, batch_size_unsup=6,
                             checkpoint_dir=str(tmp_path / str(share)))
        trainer = Trainer(config, tables)
        trainer.model.share_reference_encoder = share
        initial = [v.numpy() for v in trainer.model.trainable_variables]
        for _ in range(3):
            trainer.train_step(sup, unsup)
        graph = trainer.train_step.get_concrete_function(sup, unsup).graph
        # The shared step finds the batch's distinct classes; the per-sample one does not.
        assert any(op.type == "Unique" for op in graph.get_operations()) == share
        weights[share] = [(v.numpy() - w, np.abs(w).max()) for v, w in zip(trainer.model.trainable_variables, initial)]
    # The updates (final minus initial weights) agree, to float32 rounding of the weights.
    for (shared, _), (per_sample, scale) in zip(weights[True], weights[False]):
        assert np.abs(per_sample).max() > 0
        np.testing.assert_allclose(shared, per_sample, rtol=1e-3,
                                   atol=1e-4 * np.abs(per_sample).max() + 1e-6 * scale)


def test_trainer_keeps_the_per_sample_encoder_under_xla(tmp_path):
    tables = feature_tables(np.random.default_rng(13), img_dim=8, classes=5, num_ref=3)
    for jit_compile in (False, True):
        config = TrainConfig(img_dim=8, num_ref=3, batch_size_sup=6, batch_size_unsup=6, jit_compile=jit_compile,
                             checkpoint_dir=str(tmp_path / str(jit_compile)))
        assert Trainer(config, tables).model.share_reference_encoder is not jit_compile
