"""noise_model/train.py under tf.distribute on CPU trains the same weights as one device.

`--stage=all` on the digits data, 2 iterations per stage at a global batch of 16: the clean
stage (masked CE), noisy_gt, ntype and the joint stage (clean CE + noise-type CE +
NoisyLabelLoss, every loss divided by the whole batch M). Mirrored over two logical CPU
devices and two MultiWorkerMirroredStrategy processes on 127.0.0.1 must give the weights
of a single-device run to 1e-5: each replica trains on its half of the same global batch,
and the per-replica loss scaling together with CaffeSGD's gradient averaging must add up
to the single-device gradient (a factor-2 mistake would show here as a different update).

Why 2 iterations: the replicas' float32 sums differ from one device's in the last bits
(~1e-8 on the weights); on this data a third joint iteration meets a discontinuity of the
gradient (a max-pool tie or a ReLU at 0 on the upscaled 8×8 digits) where such a 1e-8
difference flips a choice and moves a few noise-type conv weights by ~3e-5. Restarting
that third iteration on one device from the distributed run's checkpoint gives the
distributed result again (1e-8): the update is the same, only its input differs by
round-off.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from process_control import local_cluster_tf_configs
import tensorflow as tf

from noise_model.model import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "noise_model", "train.py")
MAX_ITER = 2
STAGE_NETS = {"clean": "clean", "ntype": "ntype", "joint": "joint"}


def env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)


@pytest.fixture(scope="module")
def data_dir(digits_dir):
    """The session's prepared digits (tests/conftest.py)."""
    return digits_dir


def train_command(data_dir, train_dir, extra=()):
    # base_lr 0.01 for every stage so that 3 iterations move the weights measurably.
    return [sys.executable, TRAIN_SCRIPT, "--dataset=digits", "--stage=all",
            "--data_dir=" + data_dir, "--train_dir=" + str(train_dir),
            "--max_iter=%d" % MAX_ITER, "--batch_size=16", "--test_batch_size=200",
            "--test_interval=100", "--snapshot_interval=1", "--display=1", "--base_lr=0.01",
            "--seed=1"] + list(extra)


def stage_weights(train_dir, stage, iteration=MAX_ITER):
    """The weights of train_dir/STAGE/ckpt-ITERATION restored into a fresh model."""
    model = models.build_stage_net("digits", STAGE_NETS[stage], 10, 32)
    before = [w.copy() for w in model.get_weights()]
    path = os.path.join(str(train_dir), stage, "ckpt-%d" % iteration)
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()
    weights = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(weights, before))  # restored
    return weights


def max_difference(a, b):
    assert len(a) == len(b) > 0
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def compare(train_dir, reference):
    diffs = {stage: max_difference(stage_weights(train_dir, stage), weights)
             for stage, weights in reference.items()}
    print("max abs weight difference to the single-device run: %s"
          % ", ".join("%s %.3g" % item for item in sorted(diffs.items())))
    return diffs


@pytest.fixture(scope="module")
def single_device(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    result = subprocess.run(train_command(data_dir, out), capture_output=True, text=True,
                            env=env(), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = {stage: stage_weights(out, stage) for stage in STAGE_NETS}
    # The stages trained: the weights moved in the last iteration, so equal final weights
    # below mean equal updates, not untouched initial values.
    for stage in STAGE_NETS:
        assert max_difference(weights[stage], stage_weights(out, stage, MAX_ITER - 1)) > 1e-4, stage
    return weights


def test_mirrored_two_cpu_replicas_equal_single_device(data_dir, single_device, tmp_path):
    result = subprocess.run(
        train_command(data_dir, tmp_path, ["--distribution=mirrored", "--num_cpu_replicas=2"]),
        capture_output=True, text=True, env=env(), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using MirroredStrategy with devices" in result.stderr
    assert "2 replica(s)" in result.stderr
    diffs = compare(tmp_path, single_device)
    assert max(diffs.values()) < 1e-5, diffs


def test_batch_not_divisible_by_replicas_is_refused(data_dir, tmp_path):
    command = train_command(data_dir, tmp_path, ["--distribution=mirrored",
                                                 "--num_cpu_replicas=2"])
    command = [c if not c.startswith("--batch_size=") else "--batch_size=15" for c in command]
    result = subprocess.run(command, capture_output=True, text=True, env=env(), timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "batch_size" in errors[0] and "divisible" in errors[0]


@pytest.mark.slow
def test_multi_worker_two_processes_equal_single_device(data_dir, single_device, tmp_path):
    processes = []
    for tf_config in local_cluster_tf_configs(2):
        processes.append(subprocess.Popen(
            train_command(data_dir, tmp_path, ["--distribution=multi_worker"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env(TF_CONFIG=tf_config)))
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    diffs = compare(tmp_path, single_device)  # the chief's (worker 0) checkpoints
    assert max(diffs.values()) < 1e-5, diffs
    # Worker 1 wrote its checkpoints aside and no TensorBoard log.
    assert os.path.isdir(os.path.join(str(tmp_path), "clean", ".worker_worker_1"))
    assert not [n for n in os.listdir(os.path.join(str(tmp_path), "clean", ".worker_worker_1"))
                if n.startswith("events.out")]
    assert [n for n in os.listdir(os.path.join(str(tmp_path), "clean")) if n.startswith("events.out")]
