"""CaffeSGD against Caffe's update written out by hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from noise_model.solver import CaffeSGD


def make_variables():
    kernel = tf.Variable([[1.0, -2.0], [0.5, 3.0]], name="kernel")
    bias = tf.Variable([0.25, -1.0], name="bias")
    return kernel, bias


GRADS = [
    (np.array([[0.1, 0.2], [-0.3, 0.4]]), np.array([0.5, -0.5])),
    (np.array([[-0.2, 0.1], [0.0, 0.3]]), np.array([1.0, 2.0])),
]


def hand_update(base_lr, momentum, weight_decay, gamma, stepsize, bias_decay_mult):
    """Two Caffe steps for (kernel, bias), with lr at step t = base_lr·gamma^⌊t/stepsize⌋."""
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    b = np.array([0.25, -1.0])
    v_w, v_b = np.zeros_like(w), np.zeros_like(b)
    history = []
    for t, (g_w, g_b) in enumerate(GRADS):
        lr = base_lr * gamma ** (t // stepsize)
        v_w = momentum * v_w + lr * (g_w + weight_decay * w)
        v_b = momentum * v_b + (2.0 * lr) * (g_b + weight_decay * bias_decay_mult * b)
        w, b = w - v_w, b - v_b
        history.append((w.copy(), b.copy()))
    return history


@pytest.mark.parametrize("use_function", [False, True])
def test_two_steps_match_hand_computed_caffe_update(use_function):
    kernel, bias = make_variables()
    solver = CaffeSGD(0.1, momentum=0.9, weight_decay=0.004, gamma=0.5, stepsize=1,
                      bias_decay_mult=0.0)

    def step(g_w, g_b):
        return solver.apply_gradients([(g_w, kernel), (g_b, bias)])

    if use_function:
        step = tf.function(step)
    want = hand_update(0.1, 0.9, 0.004, 0.5, 1, 0.0)
    for t, (g_w, g_b) in enumerate(GRADS):
        iterations = step(tf.constant(g_w, tf.float32), tf.constant(g_b, tf.float32))
        assert int(iterations) == t + 1
        np.testing.assert_allclose(kernel.numpy(), want[t][0], rtol=1e-6)
        np.testing.assert_allclose(bias.numpy(), want[t][1], rtol=1e-6)
    assert int(solver.iterations.numpy()) == 2


def test_bias_decay_mult_one_and_none_gradients_skipped():
    kernel, bias = make_variables()
    unused = tf.Variable([7.0])
    solver = CaffeSGD(0.01, weight_decay=0.1, stepsize=1000)
    want = hand_update(0.01, 0.9, 0.1, 0.1, 1000, 1.0)
    for g_w, g_b in GRADS:
        solver.apply_gradients([(tf.constant(g_w, tf.float32), kernel),
                                (tf.constant(g_b, tf.float32), bias), (None, unused)])
    np.testing.assert_allclose(kernel.numpy(), want[1][0], rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), want[1][1], rtol=1e-6)
    assert unused.numpy()[0] == 7.0


def test_step_policy_at_its_boundaries():
    solver = CaffeSGD(0.001, gamma=0.1, stepsize=4000)
    for step, want in [(0, 1e-3), (3999, 1e-3), (4000, 1e-4), (7999, 1e-4), (8000, 1e-5)]:
        np.testing.assert_allclose(float(solver.learning_rate(step)), want, rtol=1e-6)
    assert float(CaffeSGD(0.01).learning_rate(123456)) == pytest.approx(0.01)


def test_keras_variables_and_checkpoint_round_trip(tmp_path):
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    solver = CaffeSGD(0.1, weight_decay=0.01)
    solver.build(layer.trainable_variables)
    x = tf.constant([[1.0, 2.0, 3.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    solver.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables),
                               layer.trainable_variables))
    assert len(solver.momentum_slots) == 2
    path = tf.train.Checkpoint(solver=solver).save(str(tmp_path / "ckpt"))

    restored = CaffeSGD(0.1, weight_decay=0.01)
    restored.build(layer.trainable_variables)
    tf.train.Checkpoint(solver=restored).restore(path).assert_consumed()
    assert int(restored.iterations.numpy()) == 1
    for a, b in zip(solver.momentum_slots, restored.momentum_slots):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert np.any(a.numpy() != 0)
