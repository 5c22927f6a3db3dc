"""--mixed_precision: float16 compute, but the loss (and what is logged) stays float32 and
close to the float32 run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cleannet.trainer import FeatureTables, TrainConfig, Trainer


def tables(rng, img_dim=8, classes=3, num_ref=2):
    def verified(n):
        return (rng.random((n, img_dim), dtype=np.float32), rng.integers(0, classes, n).astype(np.int32),
                rng.integers(0, 2, n).astype(np.float32))
    all_ids = np.sort(rng.integers(0, classes, 30)).astype(np.int32)
    return FeatureTables(*verified(16), *verified(8), reference=rng.random((classes, num_ref, img_dim), dtype=np.float32),
                         all_features=rng.random((30, img_dim), dtype=np.float32), all_class_ids=all_ids,
                         all_offsets=np.searchsorted(all_ids, np.arange(classes + 1)).astype(np.int64))


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def first_step(mixed, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(1)
    config = TrainConfig(img_dim=8, num_ref=2, batch_size_sup=4, batch_size_unsup=4, mixed_precision=mixed,
                         checkpoint_dir=str(tmp_path / ("m" if mixed else "f")))
    trainer = Trainer(config, tables(np.random.default_rng(0)))
    initial = trainer.model.query_encoder.hidden.kernel.numpy()
    out = trainer.train_step(tf.constant([0, 1, 2, 3], tf.int64), tf.constant([0, 5, 10, 20], tf.int64))
    return trainer, out, initial


def test_mixed_precision_keeps_the_loss_float32(tmp_path, restore_policy):
    trainer32, out32, initial32 = first_step(False, tmp_path)
    trainer16, out16, initial16 = first_step(True, tmp_path)
    np.testing.assert_array_equal(initial16, initial32)  # same seed, same start
    assert trainer16.model.query_encoder.hidden.compute_dtype == "float16"
    assert trainer16.model.query_encoder.hidden.kernel.dtype == "float32"  # float32 variables
    for key in ("loss", "objective_loss", "regularization_loss"):
        assert out16[key].dtype == tf.float32
        assert float(out16[key]) == pytest.approx(float(out32[key]), rel=2e-2)
    assert bool(out16["finite"])
    # The update went through the loss-scale optimizer (not skipped) and matches the
    # float32 update to float16 precision.
    w32 = trainer32.model.query_encoder.hidden.kernel.numpy()
    w16 = trainer16.model.query_encoder.hidden.kernel.numpy()
    step32 = w32 - initial32
    step16 = w16 - initial16
    assert np.max(np.abs(step16)) > 0.1 * np.max(np.abs(step32)) > 0
    assert np.max(np.abs(step16 - step32)) < 0.05 * np.max(np.abs(step32)) + 1e-6
