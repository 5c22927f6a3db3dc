"""noise_model/train.py killed at random moments and restarted ends where an uninterrupted
run ends.

The training stream is a pure function of (--seed, iteration) (datasets.training_order)
and a checkpoint holds the weights, CaffeSGD's momentum and the iteration count, so a run
resumed from its latest checkpoint must reach the final weights of a run never
interrupted (CifarQuick: no dropout). SIGKILL can land anywhere, including inside a
checkpoint write: every checkpoint left on disk must still be readable. SIGTERM asks
train.py to save a checkpoint at the current iteration and exit 0.
"""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from process_control import ENV, ROOT, checkpoint_steps, read_all, run_until

TRAIN_SCRIPT = os.path.join(ROOT, "noise_model", "train.py")
MAX_ITER, SNAPSHOT = 32, 4
NUM_KILLS = 10  # as for train.py: ten kills in a row
ITERATION_LINE = re.compile(r"Iteration (\d+) \(")


@pytest.fixture(scope="module")
def data_dir(digits_dir):
    """The session's prepared digits (tests/conftest.py)."""
    return digits_dir


def train_args(data_dir, train_dir, max_iter=MAX_ITER, snapshot=SNAPSHOT):
    return [sys.executable, TRAIN_SCRIPT, "--dataset=digits", "--stage=clean",
            "--data_dir=" + data_dir, "--train_dir=" + train_dir, "--max_iter=%d" % max_iter,
            "--snapshot_interval=%d" % snapshot, "--batch_size=16", "--test_batch_size=360",
            "--test_interval=1000", "--display=1", "--base_lr=0.01", "--stepsize=25",
            "--seed=5"]


# One kill in the default suite; ten in a row in the slow suite (pytest -m slow).
@pytest.mark.parametrize("num_kills", [1, pytest.param(NUM_KILLS, marks=pytest.mark.slow)])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, data_dir, num_kills):
    # The uninterrupted run goes on beside the interrupted ones (2 processes on 2 cores).
    reference_dir = str(tmp_path / "reference")
    reference = subprocess.Popen(train_args(data_dir, reference_dir), cwd=ROOT, env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_dir = str(tmp_path / "killed")
    rng = np.random.default_rng(2026)
    # Kill points: after the log line of a random iteration (some before the first
    # snapshot), plus a random delay so that kills also land inside checkpoint writes.
    targets = np.sort(rng.choice(np.arange(1, MAX_ITER - 1), num_kills, replace=False))
    delays = rng.uniform(0.0, 0.03, num_kills)
    killed = 0
    for target, delay in zip(targets, delays):
        def should_stop(iteration, target=target, delay=delay):
            if iteration >= target:
                time.sleep(delay)
                return signal.SIGKILL
            return None

        proc, _ = run_until(train_args(data_dir, killed_dir), ITERATION_LINE, should_stop)
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        else:
            assert proc.returncode == 0  # it reached max_iter before the kill
        for step in checkpoint_steps(killed_dir):
            read_all(os.path.join(killed_dir, "ckpt-%d" % step))  # readable after every kill
    assert killed >= num_kills // 2, killed

    proc, _ = run_until(train_args(data_dir, killed_dir), ITERATION_LINE, lambda iteration: None)
    assert proc.returncode == 0
    assert reference.wait(timeout=300) == 0

    steps = checkpoint_steps(killed_dir)
    assert steps[-1] == MAX_ITER
    for step in steps:
        values = read_all(os.path.join(killed_dir, "ckpt-%d" % step))
        assert int(values["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == step
        assert int(values["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == step
    resumed = read_all(os.path.join(killed_dir, "ckpt-%d" % MAX_ITER))
    uninterrupted = read_all(os.path.join(reference_dir, "ckpt-%d" % MAX_ITER))
    assert resumed.keys() == uninterrupted.keys()
    max_diff, compared = 0.0, 0
    for name, value in uninterrupted.items():
        if name.startswith(("model/", "optimizer/")) and \
                np.issubdtype(np.asarray(value).dtype, np.floating):
            max_diff = max(max_diff, float(np.max(np.abs(resumed[name] - value), initial=0.0)))
            compared += 1
    print("kill/resume: %d kills mid-training at iterations >= %s; %d tensors compared; max abs "
          "difference %.3g" % (killed, targets.tolist(), compared, max_diff))
    assert compared >= 20  # 10 weights + 10 momentum slots
    assert max_diff <= 1e-6


def test_sigterm_saves_a_checkpoint_at_the_current_iteration(tmp_path, data_dir):
    train_dir = str(tmp_path / "run")
    # Snapshots at 10, 20, ...; SIGTERM after iteration 13's log line normally lands
    # between 14 and 20 and must give a checkpoint past 13.
    proc, last = run_until(train_args(data_dir, train_dir, max_iter=100000, snapshot=10), ITERATION_LINE,
                           lambda iteration: signal.SIGTERM if iteration >= 13 else None)
    assert proc.returncode == 0
    steps = checkpoint_steps(train_dir)
    newest = steps[-1]
    assert steps[0] == 10 and newest > last >= 13, steps
    assert set(steps) == set(range(10, newest, 10)) | {newest}  # one extra: the SIGTERM's
    values = read_all(os.path.join(train_dir, "ckpt-%d" % newest))
    assert int(values["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == newest
    assert not os.path.exists(os.path.join(train_dir, "final.json"))  # not finished
