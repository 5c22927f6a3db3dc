"""A noisy-label stage's train_dir is owned like train.py's: damaged checkpoints, foreign state files."""

import os

import pytest
import tensorflow as tf

from noise_model.training import settings as settings_lib, stage_runner
from noisylabels.errors import InputError


def config(data_dir, train_dir, **overrides):
    values = {"max_iter": 4, "batch_size": 16, "test_batch_size": 200, "test_interval": 2, "snapshot_interval": 2,
              "display": 2}
    values.update(overrides)
    settings = settings_lib.resolve_settings("digits", "clean", values)
    return stage_runner.StageConfig(dataset="digits", stage="clean", data_dir=data_dir, train_dir=train_dir,
                                    settings=settings, seed=0)


def test_a_truncated_latest_snapshot_falls_back_to_the_previous_one(digits_dir, tmp_path):
    train_dir = str(tmp_path / "clean")
    stage_runner.run_stage(config(digits_dir, train_dir, max_iter=4))
    for name in os.listdir(train_dir):
        if name.startswith("ckpt-4.data"):
            with open(os.path.join(train_dir, name), "r+b") as f:
                f.truncate(16)
    os.remove(os.path.join(train_dir, "final.json"))  # an unfinished stage: it resumes
    metrics = stage_runner.run_stage(config(digits_dir, train_dir, max_iter=6))
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    reader = tf.train.load_checkpoint(os.path.join(train_dir, "ckpt-6"))
    assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 6
    # ckpt-4 was redone from ckpt-2 and written again, readable this time.
    assert tf.train.load_checkpoint(os.path.join(train_dir, "ckpt-4")).get_tensor(
        "global_step/.ATTRIBUTES/VARIABLE_VALUE") == 4


def test_a_state_file_naming_another_directory_is_refused(digits_dir, tmp_path):
    other = str(tmp_path / "other")
    stage_runner.run_stage(config(digits_dir, other, max_iter=2))
    before = sorted(os.listdir(other))
    train_dir = tmp_path / "clean"
    train_dir.mkdir()
    (train_dir / "checkpoint").write_text('model_checkpoint_path: "../other/ckpt-2"\n'
                                          'all_model_checkpoint_paths: "../other/ckpt-2"\n')
    with pytest.raises(InputError, match="outside its directory"):
        stage_runner.run_stage(config(digits_dir, str(train_dir), max_iter=2))
    assert sorted(os.listdir(other)) == before
