"""A non-finite loss stops CleanNet training with a message naming the step and the last
good checkpoint, and nothing after that checkpoint is written."""

import pytest
import tensorflow as tf

from cleannet_fixtures import write_cleannet_data

from cleannet.trainer import TrainConfig, train
from noisylabels.errors import TrainingError

IMG_DIM, CLASSES, NUM_REF = 8, 3, 2


@pytest.fixture
def data_dir(tmp_path):
    return write_cleannet_data(tmp_path, img_dim=IMG_DIM, num_classes=CLASSES, num_ref=NUM_REF, n_train=20, n_val=8)


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
