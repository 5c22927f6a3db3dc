"""End-to-end runs of the noisy-label pipeline through its command-line tools.

CIFAR-10: tiny python batches (tests/noise_fixtures.py) → `python -m noise_model.cifar10`
→ clean → noisy_gt → ntype → joint with a few iterations each, every stage started from
the previous stage's checkpoint. Clothing1M: a few dozen small JPEGs → prepare → clean →
ntype → joint → joint_stage2 with CaffeNet, one or two iterations at batch 2.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import noise_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "noise_model", "train.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _run(args, timeout=300):
    """Runs a command from the repository root; returns its stderr (the absl log)."""
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=ROOT,
                            timeout=timeout)
    assert result.returncode == 0, "%s\n%s" % (" ".join(args), result.stderr[-4000:])
    return result.stderr


def _train(*flags):
    # Alternate the two ways of starting the script.
    return _run([sys.executable, "-m", "noise_model.train"] + list(flags))


def _train_script(*flags):
    return _run([sys.executable, TRAIN_SCRIPT] + list(flags))


def _event_tags(train_dir):
    """Every summary tag in train_dir's TensorBoard event files."""
    tags = set()
    for path in glob.glob(os.path.join(train_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
    return tags


def _model_variables(checkpoint_path, prefix):
    """{name without prefix: array} of a checkpoint's variables under `prefix`."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    return {name[len(prefix):]: reader.get_tensor(name)
            for name, _ in tf.train.list_variables(checkpoint_path) if name.startswith(prefix)}


def _final(train_dir):
    with open(os.path.join(train_dir, "final.json")) as f:
        return json.load(f)


def _assert_stage_files(train_dir, stage, iteration):
    with open(os.path.join(train_dir, "stage.json")) as f:
        assert json.load(f)["stage"] == stage
    final = _final(train_dir)
    assert final["iteration"] == iteration
    assert os.path.exists(os.path.join(train_dir, final["checkpoint"] + ".index"))
    assert final["checkpoint"] == "ckpt-%d" % iteration
    return final


@pytest.mark.slow
def test_cifar10_four_stages_chain(tmp_path):
    raw, prepared, train_dir = tmp_path / "raw", str(tmp_path / "prepared"), tmp_path / "train"
    noise_fixtures.write_cifar10_python(str(raw), num_train=500, num_test=200, seed=0)
    _run([sys.executable, "-m", "noise_model.cifar10", "--data_dir=%s" % raw,
          "--output_dir=%s" % prepared, "--num_clean=100", "--noise_level=0.5", "--seed=0"])
    common = ["--dataset=cifar10", "--data_dir=" + prepared, "--batch_size=20",
              "--test_batch_size=50", "--test_interval=2", "--snapshot_interval=2",
              "--display=1"]
    clean, noisy_gt = str(train_dir / "clean"), str(train_dir / "noisy_gt")
    ntype, joint = str(train_dir / "ntype"), str(train_dir / "joint")

    log = _train(*common, "--stage=clean", "--train_dir=" + clean, "--max_iter=4")
    assert "Iteration 0, Testing net" in log and "Iteration 4, Testing net" in log
    assert "lr = 0.001" in log
    assert "Snapshotting to %s" % os.path.join(clean, "ckpt-4") in log
    final = _assert_stage_files(clean, "clean", 4)
    assert 0.0 <= final["metrics"]["test/accuracy"] <= 1.0
    assert {"train/loss", "train/clean_loss", "train/lr", "train/accuracy", "test/accuracy",
            "test/loss"} <= _event_tags(clean)

    log = _train_script(*common, "--stage=noisy_gt", "--train_dir=" + noisy_gt,
                        "--clean_model_dir=" + clean, "--max_iter=2")
    assert "copied layers [conv1, conv2, conv3, ip1, ip2]" in log
    _assert_stage_files(noisy_gt, "noisy_gt", 2)

    log = _train(*common, "--stage=ntype", "--train_dir=" + ntype, "--clean_model_dir=" + clean,
                 "--max_iter=2")
    assert "copied layers [conv1, conv2, conv3]" in log  # conv layers only
    assert "ntype_test" in log and "lr = 0.0001" in log
    _assert_stage_files(ntype, "ntype", 2)
    assert "train/ntype_loss" in _event_tags(ntype)

    # joint at max_iter 0: its checkpoint is the initial state.
    _train_script(*common, "--stage=joint", "--train_dir=" + joint, "--clean_model_dir=" + clean,
                  "--ntype_model_dir=" + ntype, "--max_iter=0")
    _assert_stage_files(joint, "joint", 0)
    start = os.path.join(joint, "ckpt-0")
    clean_vars = _model_variables(os.path.join(clean, "ckpt-4"), "model/")
    ntype_vars = _model_variables(os.path.join(ntype, "ckpt-2"), "model/")
    joint_clean = _model_variables(start, "model/clean_net/")
    joint_ntype = _model_variables(start, "model/ntype_net/")
    assert set(joint_clean) == set(clean_vars) and len(clean_vars) == 10
    for name, value in clean_vars.items():
        np.testing.assert_array_equal(joint_clean[name], value, err_msg=name)
    for name, value in ntype_vars.items():
        np.testing.assert_array_equal(joint_ntype[name], value, err_msg=name)
    assert not np.array_equal(joint_ntype["ip2/bias/.ATTRIBUTES/VARIABLE_VALUE"].shape,
                              joint_clean["ip2/bias/.ATTRIBUTES/VARIABLE_VALUE"].shape)

    # ... and resumed from there to iteration 3.
    log = _train(*common, "--stage=joint", "--train_dir=" + joint, "--clean_model_dir=" + clean,
                 "--ntype_model_dir=" + ntype, "--max_iter=3")
    assert "Resuming from" in log and "ckpt-0" in log
    assert "Training joint from iteration 0 to 3" in log
    final = _assert_stage_files(joint, "joint", 3)
    assert set(final["metrics"]) == {"test/accuracy", "test/loss"}
    assert {"train/loss", "train/clean_loss", "train/ntype_loss", "train/noisy_label_loss",
            "train/lr", "train/accuracy", "test/accuracy", "test/loss"} <= _event_tags(joint)
    trained = _model_variables(os.path.join(joint, "ckpt-3"), "model/clean_net/")
    assert not np.array_equal(trained["ip2/bias/.ATTRIBUTES/VARIABLE_VALUE"],
                              clean_vars["ip2/bias/.ATTRIBUTES/VARIABLE_VALUE"])


@pytest.mark.slow  # CaffeNet on CPU: 40 s on an idle 2-core machine, much more when busy
def test_clothing1m_stages_chain(tmp_path):
    root, prepared, train_dir = str(tmp_path / "root"), str(tmp_path / "prepared"), tmp_path / "t"
    noise_fixtures.write_clothing1m(root, num_images=40, seed=0)
    _run([sys.executable, "-m", "noise_model.clothing1m", "--data_root=" + root,
          "--output_dir=" + prepared, "--seed=0"])
    common = ["--dataset=clothing1m", "--data_dir=" + prepared, "--batch_size=2",
              "--test_batch_size=5", "--test_interval=100", "--display=1"]
    clean, ntype = str(train_dir / "clean"), str(train_dir / "ntype")
    joint, stage2 = str(train_dir / "joint"), str(train_dir / "joint_stage2")

    log = _train(*common, "--stage=clean", "--train_dir=" + clean, "--max_iter=2")
    assert "clean_val" in log and "Iteration 2, Testing net" in log
    final = _assert_stage_files(clean, "clean", 2)
    assert set(final["metrics"]) == {"val/accuracy", "val/loss", "test/accuracy", "test/loss"}
    assert {"train/loss", "train/clean_loss", "train/lr", "train/accuracy", "val/accuracy",
            "test/accuracy", "test/loss"} <= _event_tags(clean)

    log = _train_script(*common, "--stage=ntype", "--train_dir=" + ntype,
                        "--clean_model_dir=" + clean, "--max_iter=1")
    assert "copied layers [conv1, conv2, conv3, conv4, conv5, fc6]" in log
    _assert_stage_files(ntype, "ntype", 1)

    log = _train(*common, "--stage=joint", "--train_dir=" + joint, "--clean_model_dir=" + clean,
                 "--ntype_model_dir=" + ntype, "--max_iter=1")
    assert "update_noise_lr: 0.0" in log and "clean_loss_weight: 0.1" in log
    _assert_stage_files(joint, "joint", 1)
    assert {"train/noisy_label_loss", "train/clean_loss"} <= _event_tags(joint)

    # Stage 2 continues stage 1's weights, momentum and iteration count.
    log = _train_script(*common, "--stage=joint_stage2", "--train_dir=" + stage2,
                        "--init_dir=" + joint, "--max_iter=2")
    assert "Continuing joint stage 1's state" in log
    assert "Training joint_stage2 from iteration 1 to 2" in log
    _assert_stage_files(stage2, "joint_stage2", 2)
    reader = tf.train.load_checkpoint(os.path.join(stage2, "ckpt-2"))
    assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 2
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 2
