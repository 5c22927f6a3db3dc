"""CaffeSGD (a Keras optimizer) against Caffe's update written out in NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from noise_model.training.solver import CaffeSGD, CaffeStepSchedule
from noisylabels import distribution

try:  # two logical CPUs for the mirrored test (only possible before TensorFlow initialises)
    distribution.split_cpu(2)
except RuntimeError:
    pass

W0 = np.array([[1.0, -2.0], [0.5, 3.0]])
B0 = np.array([0.25, -1.0])
GRADS = [
    (np.array([[0.1, 0.2], [-0.3, 0.4]]), np.array([0.5, -0.5])),
    (np.array([[-0.2, 0.1], [0.0, 0.3]]), np.array([1.0, 2.0])),
    (np.array([[0.3, -0.1], [0.2, -0.4]]), np.array([-1.5, 0.25])),
]


def make_variables():
    return tf.Variable(W0, dtype=tf.float32, name="kernel"), tf.Variable(B0, dtype=tf.float32, name="bias")


def numpy_caffe_steps(base_lr, momentum, weight_decay, gamma, stepsize, bias_lr_mult, bias_decay_mult):
    """Caffe's update for (kernel, bias), in float64: lr at step t = base_lr·gamma^⌊t/stepsize⌋,
    V ← m·V + local_lr·(g + local_decay·W), W ← W − V."""
    w, b = W0.copy(), B0.copy()
    v_w, v_b = np.zeros_like(w), np.zeros_like(b)
    history = []
    for t, (g_w, g_b) in enumerate(GRADS):
        lr = base_lr * gamma ** (t // stepsize)
        v_w = momentum * v_w + lr * (g_w + weight_decay * w)
        v_b = momentum * v_b + (bias_lr_mult * lr) * (g_b + weight_decay * bias_decay_mult * b)
        w, b = w - v_w, b - v_b
        history.append((w.copy(), b.copy(), v_w.copy(), v_b.copy()))
    return history


@pytest.mark.parametrize("use_function", [False, True])
@pytest.mark.parametrize("bias_lr_mult,bias_decay_mult", [(2.0, 0.0), (2.0, 1.0), (3.0, 0.5)])
def test_steps_match_numpy_caffe_update_with_lr_drop(use_function, bias_lr_mult, bias_decay_mult):
    kernel, bias = make_variables()
    # stepsize 2: the lr drops by gamma before the third step.
    solver = CaffeSGD(0.1, momentum=0.9, weight_decay=0.004, gamma=0.5, stepsize=2,
                      bias_lr_mult=bias_lr_mult, bias_decay_mult=bias_decay_mult)
    solver.build([kernel, bias])

    def step(g_w, g_b):
        solver.apply_gradients([(g_w, kernel), (g_b, bias)])

    if use_function:
        step = tf.function(step)
    want = numpy_caffe_steps(0.1, 0.9, 0.004, 0.5, 2, bias_lr_mult, bias_decay_mult)
    for t, (g_w, g_b) in enumerate(GRADS):
        step(tf.constant(g_w, tf.float32), tf.constant(g_b, tf.float32))
        assert int(solver.iterations.numpy()) == t + 1
        np.testing.assert_allclose(kernel.numpy(), want[t][0], rtol=1e-6)
        np.testing.assert_allclose(bias.numpy(), want[t][1], rtol=1e-6)
    velocities = [v.numpy() for v in solver.velocities]
    np.testing.assert_allclose(velocities[0], want[-1][2], rtol=1e-5)
    np.testing.assert_allclose(velocities[1], want[-1][3], rtol=1e-5)


def test_none_gradients_leave_their_variable_alone():
    kernel, bias = make_variables()
    unused = tf.Variable([7.0])
    solver = CaffeSGD(0.01, weight_decay=0.1, stepsize=1000)
    solver.build([kernel, bias, unused])
    want = numpy_caffe_steps(0.01, 0.9, 0.1, 0.1, 1000, 2.0, 1.0)
    for g_w, g_b in GRADS[:2]:
        solver.apply_gradients([(tf.constant(g_w, tf.float32), kernel),
                                (tf.constant(g_b, tf.float32), bias), (None, unused)])
    np.testing.assert_allclose(kernel.numpy(), want[1][0], rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), want[1][1], rtol=1e-6)
    assert unused.numpy()[0] == 7.0


def test_step_policy_at_its_boundaries():
    schedule = CaffeStepSchedule(0.001, gamma=0.1, stepsize=4000)
    for step, want in [(0, 1e-3), (3999, 1e-3), (4000, 1e-4), (7999, 1e-4), (8000, 1e-5)]:
        np.testing.assert_allclose(float(schedule(step)), want, rtol=1e-6)
    assert float(CaffeStepSchedule(0.01)(123456)) == pytest.approx(0.01)
    assert float(CaffeSGD(0.001, stepsize=4000).schedule(4000)) == pytest.approx(1e-4)
    with pytest.raises(ValueError):
        CaffeStepSchedule(0.0)


def test_keras_variables_and_checkpoint_round_trip(tmp_path):
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    solver = CaffeSGD(0.1, weight_decay=0.01)
    solver.build(layer.trainable_variables)
    x = tf.constant([[1.0, 2.0, 3.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    solver.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
    assert len(solver.velocities) == 2
    path = tf.train.Checkpoint(solver=solver).save(str(tmp_path / "ckpt"))

    restored = CaffeSGD(0.1, weight_decay=0.01)
    restored.build(layer.trainable_variables)
    tf.train.Checkpoint(solver=restored).restore(path).assert_consumed()
    assert int(restored.iterations.numpy()) == 1
    for a, b in zip(solver.velocities, restored.velocities):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert np.any(a.numpy() != 0)


def test_mirrored_replicas_summing_their_shares_equal_one_device():
    """Two logical CPU replicas, each with the loss share Σ_slice / M, give the one-device update."""
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices (set before TensorFlow initialises)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:2]])
    data = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
    with strategy.scope():
        layer = keras.layers.Dense(2, kernel_initializer="ones")
        layer.build((None, 3))
        solver = CaffeSGD(0.1, weight_decay=0.01)
        solver.build(layer.trainable_variables)

    def replica_step():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        rows = data[replica * 2:(replica + 1) * 2]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(rows) ** 2) / 4.0
        solver.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))

    strategy.run(tf.function(replica_step))
    w = np.ones((3, 2))
    b = np.zeros(2)
    out = data.numpy() @ w + b
    g_w = data.numpy().T @ (2 * out) / 4.0
    g_b = (2 * out).sum(0) / 4.0
    np.testing.assert_allclose(layer.kernel.numpy(), w - 0.1 * (g_w + 0.01 * w), rtol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), b - 0.2 * (g_b + 0.01 * b), rtol=1e-6)
