"""The training data pipelines' sampling semantics, the lr schedule and the optimizer rule."""

import numpy as np
import pytest
import tensorflow as tf

from cleannet import data
from cleannet.optimizer import TF1Momentum, staircase_learning_rate


def take(dataset, n):
    return [x.numpy() if not isinstance(x, tuple) else tuple(t.numpy() for t in x) for x in dataset.take(n)]


def test_verified_batches_cover_each_epoch_once_and_wrap_around():
    n, batch = 10, 4
    batches = take(data.verified_indices(n, batch, seed=7), 5)  # 20 positions = 2 epochs
    flat = np.concatenate(batches)
    # Each epoch is a permutation of all rows; batch 3 (positions 8..11) straddles the boundary.
    assert sorted(flat[:10]) == list(range(10))
    assert sorted(flat[10:20]) == list(range(10))
    assert all(len(b) == batch for b in batches)


def test_verified_batches_reshuffle_each_epoch():
    n = 50
    flat = np.concatenate(take(data.verified_indices(n, 10, seed=3), 15))
    epochs = flat.reshape(3, n)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    assert not np.array_equal(epochs[0], np.arange(n))  # shuffled, not file order


def test_verified_resume_gives_the_same_batches():
    full = take(data.verified_indices(13, 5, seed=1), 9)
    resumed = take(data.verified_indices(13, 5, seed=1, start_step=4), 5)
    for a, b in zip(full[4:], resumed):
        np.testing.assert_array_equal(a, b)


def test_class_offsets():
    np.testing.assert_array_equal(data.class_offsets([0, 0, 2, 2, 2], 4), [0, 2, 2, 5, 5])


def test_unverified_sampling_is_class_balanced():
    # Class 0 has 1 sample, class 1 has 9, class 2 none, class 3 has 90: draws must be
    # uniform over the three classes that have samples, not proportional to their sizes.
    class_ids = np.array([0] + [1] * 9 + [3] * 90)
    offsets = data.class_offsets(class_ids, 4)
    draws = np.concatenate(take(data.unverified_indices(offsets, 200, seed=5), 30))  # 6000 draws
    classes = class_ids[draws]
    counts = np.bincount(classes, minlength=4)
    assert counts[2] == 0
    expected = len(draws) / 3
    chi2 = sum((counts[c] - expected) ** 2 / expected for c in (0, 1, 3))
    assert chi2 < 13.8  # chi-square, 2 d.o.f., p = 0.001
    # Within class 3, rows are drawn uniformly too.
    within = draws[classes == 3] - offsets[3]
    assert within.min() >= 0 and within.max() < 90
    hist = np.bincount(within // 30, minlength=3)  # three bins of 30 rows
    exp3 = counts[3] / 3
    assert sum((hist - exp3) ** 2 / exp3) < 13.8


def test_unverified_resume_gives_the_same_batches():
    offsets = data.class_offsets(np.array([0, 0, 1, 1, 1]), 2)
    full = take(data.unverified_indices(offsets, 4, seed=2), 6)
    resumed = take(data.unverified_indices(offsets, 4, seed=2, start_step=3), 3)
    for a, b in zip(full[3:], resumed):
        np.testing.assert_array_equal(a, b)


def test_training_indices_without_unverified_data():
    sup, unsup = take(data.training_indices(8, None, 4, 0, seed=0), 1)[0]
    assert sup.shape == (4,) and unsup.shape == (0,)


def test_validation_batches_cover_every_row_in_order():
    batches = data.validation_batches(10, 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(10))
    assert [b.tolist() for b in data.validation_batches(3, 4)] == [[0, 1, 2]]
    assert data.validation_batches(0, 4) == []


@pytest.mark.parametrize("step, expected", [(0, 0.01), (29999, 0.01), (30000, 0.001), (59999, 0.001),
                                            (60000, 0.0001)])
def test_staircase_learning_rate_at_the_boundaries(step, expected):
    assert float(staircase_learning_rate(step, 0.01, 30000, 0.1)) == pytest.approx(expected, rel=1e-6)


def test_tf1_momentum_rule_across_a_learning_rate_drop():
    # TF1: acc = m*acc + g; w -= lr*acc (lr outside the accumulation).
    w = tf.Variable([1.0, -2.0])
    lrs = iter([0.1, 0.1, 0.01])
    current = {"lr": 0.1}
    opt = TF1Momentum(learning_rate=lambda: current["lr"], momentum=0.9)
    grads = [np.array([0.5, 1.0], np.float32), np.array([-1.0, 2.0], np.float32), np.array([0.25, 0.5], np.float32)]
    acc = np.zeros(2)
    expected = np.array([1.0, -2.0])
    for g in grads:
        current["lr"] = next(lrs)
        opt.apply_gradients([(tf.constant(g), w)])
        acc = 0.9 * acc + g
        expected = expected - current["lr"] * acc
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
