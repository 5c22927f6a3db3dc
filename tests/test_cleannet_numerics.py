"""A non-finite loss stops CleanNet training with a message naming the step and the last
good checkpoint, and nothing after that checkpoint is written."""

import numpy as np
import pytest
import tensorflow as tf

from cleannet.trainer import TrainConfig, train
from util.errors import TrainingError
from util.fileio import save_npy

IMG_DIM, CLASSES, NUM_REF = 8, 3, 2


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)

    def verified(n):
        return np.column_stack([rng.random((n, IMG_DIM)), rng.integers(0, CLASSES, n),
                                rng.integers(0, 2, n)]).astype(np.float32)

    save_npy(tmp_path / "train.npy", verified(20))
    save_npy(tmp_path / "val.npy", verified(8))
    save_npy(tmp_path / "ref.npy", rng.random((CLASSES, NUM_REF, IMG_DIM), dtype=np.float32))
    return tmp_path


def config(data_dir, tmp_path, **overrides):
    values = dict(data_dir=str(data_dir), checkpoint_dir=str(tmp_path / "ckpt"), log_dir=str(tmp_path / "log"),
                  img_dim=IMG_DIM, num_ref=NUM_REF, batch_size_sup=4, batch_size_unsup=0, val_batch_size=4,
                  n_step=5, val_interval=5, log_interval=5)
    values.update(overrides)
    return TrainConfig(**values)


def test_non_finite_loss_stops_with_step_and_last_checkpoint(data_dir, tmp_path):
    train(config(data_dir, tmp_path))
    good = tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
    assert good.endswith("ckpt-5")
    # An absurd learning rate makes the weights, and so the L2 term, overflow.
    with pytest.raises(TrainingError) as raised:
        train(config(data_dir, tmp_path, n_step=40, val_interval=20, learning_rate=1e30))
    message = str(raised.value)
    assert "the loss became" in message and good in message
    step = int(message.split(" at step ")[1].split(";")[0])
    assert 5 < step < 20
    # Nothing was saved after the last good checkpoint.
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")) == good
