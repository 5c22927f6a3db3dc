"""train.py's run directory in use: foreign state files, other data, damaged checkpoints, NaN."""

import os

import numpy as np
import pytest

from cleannet.config import TrainConfig
from cleannet.trainer import train
from noisylabels.errors import InputError, TrainingError
from noisylabels.fileio import save_npy

from cleannet_fixtures import write_cleannet_data

IMG_DIM, NUM_REF, NUM_CLASSES = 4, 2, 3


def make_data_dir(directory, seed=0):
    """Tiny valid CleanNet data: img_dim 4, num_ref 2, 3 classes (tests/cleannet_fixtures.py)."""
    return write_cleannet_data(directory, seed, IMG_DIM, NUM_CLASSES, NUM_REF, n_train=12, n_val=8, n_all=9)


def config(tmp_path, data_dir, ckpt="ckpt", **overrides):
    values = dict(data_dir=data_dir, checkpoint_dir=str(tmp_path / ckpt), log_dir=str(tmp_path / "log"),
                  img_dim=IMG_DIM, num_ref=NUM_REF, batch_size_sup=4, batch_size_unsup=2, val_batch_size=4,
                  n_step=4, val_interval=2, log_interval=1, learning_rate=0.05)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("data"))


def test_a_state_file_naming_another_run_is_refused_and_that_run_survives(tmp_path, data_dir):
    train(config(tmp_path, data_dir, ckpt="other"))
    other_files = sorted(os.listdir(tmp_path / "other"))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint").write_text('model_checkpoint_path: "../other/ckpt-4"\n'
                                                  'all_model_checkpoint_paths: "../other/ckpt-2"\n'
                                                  'all_model_checkpoint_paths: "../other/ckpt-4"\n')
    with pytest.raises(InputError, match="outside its directory"):
        train(config(tmp_path, data_dir, max_checkpoints=1))
    assert sorted(os.listdir(tmp_path / "other")) == other_files


def test_resuming_on_other_data_or_settings_is_refused(tmp_path, data_dir):
    train(config(tmp_path, data_dir))
    other = make_data_dir(tmp_path / "other_data", seed=5)
    with pytest.raises(InputError) as err:
        train(config(tmp_path, other, n_step=6))
    assert "other data or settings" in str(err.value) and "train.npy changed" in str(err.value)
    with pytest.raises(InputError, match="--seed 123 -> 9"):
        train(config(tmp_path, data_dir, n_step=6, seed=9))
    assert train(config(tmp_path, data_dir, n_step=6))["step"] == 6  # the same data resumes


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, data_dir):
    train(config(tmp_path, data_dir, n_step=4))
    for name in os.listdir(tmp_path / "ckpt"):
        if name.startswith("ckpt-4.data"):
            with open(tmp_path / "ckpt" / name, "r+b") as f:
                f.truncate(8)
    result = train(config(tmp_path, data_dir, n_step=6))
    assert result["step"] == 6
    steps = sorted(int(n.split("-")[1].split(".")[0]) for n in os.listdir(tmp_path / "ckpt") if n.endswith(".index"))
    assert steps[-1] == 6 and 4 in steps  # step 4 was redone from step 2 and saved again


def test_a_non_finite_loss_stops_before_any_save_and_names_the_last_good_checkpoint(tmp_path):
    data_dir = make_data_dir(tmp_path / "data")
    train(config(tmp_path, data_dir, n_step=2, embed_norm="no_norm"))
    good = os.path.join(str(tmp_path / "ckpt"), "ckpt-2")
    array = np.load(os.path.join(data_dir, "train.npy"))
    array[:, :IMG_DIM] *= 3e38  # the features overflow float32 in the first layer
    save_npy(os.path.join(data_dir, "train_big.npy"), array)
    os.replace(os.path.join(data_dir, "train_big.npy"), os.path.join(data_dir, "train.npy"))
    with pytest.raises((TrainingError, InputError)) as err:
        train(config(tmp_path, data_dir, ckpt="fresh", n_step=4, embed_norm="no_norm"))
    message = str(err.value)
    assert "non-finite" in message or "infinity" in message or "NaN" in message, message
    assert not any(n.startswith("ckpt-") for n in os.listdir(tmp_path / "fresh")), os.listdir(tmp_path / "fresh")
    assert os.path.exists(good + ".index")


def test_training_stores_the_calibrated_decision_with_the_best_model(tmp_path, data_dir):
    import json

    from cleannet.calibration import calibrate_model
    from cleannet.checkpoints import load_inference_model
    from cleannet.trainer import load_tables

    cfg = config(tmp_path, data_dir, n_step=4)
    train(cfg)
    best = tmp_path / "ckpt" / "best"
    with open(best / "calibration.json") as f:
        stored = json.load(f)
    model, _, path = load_inference_model(str(best), IMG_DIM, NUM_REF, "log")
    assert stored["checkpoint"] == os.path.basename(path)
    tables = load_tables(cfg)
    again = calibrate_model(model, tables.reference, tables.val_features, tables.val_class_ids, tables.val_vlabels, path)
    assert stored["min_margin"] == pytest.approx(again.min_margin) and stored["val_samples"] == len(tables.val_features)
