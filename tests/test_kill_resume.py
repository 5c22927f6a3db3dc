"""train.py killed at random moments and restarted ends where an uninterrupted run ends.

CleanNet's training streams are a pure function of (seed, step) (cleannet/data.py) and a
checkpoint holds the weights, the optimizer's momentum and the step, so a run resumed from
its latest checkpoint must reach the same final weights as a run never interrupted
(dropout 0). SIGKILL can land anywhere, including inside a checkpoint write: every
checkpoint left on disk must still be readable. SIGTERM asks train.py to save a
checkpoint at the current step and exit 0.
"""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cleannet_fixtures import write_cleannet_data
from process_control import ENV, ROOT, checkpoint_steps, read_all, run_until

IMG_DIM, NUM_CLASSES, NUM_REF = 8, 3, 2
N_STEP, VAL_INTERVAL = 60, 5
NUM_KILLS = 10
STEP_LINE = re.compile(r"step (\d+): train/loss")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Tiny CleanNet data (img_dim 8, 3 classes, 2 references) in cleannet/datafiles.py layouts."""
    return write_cleannet_data(tmp_path_factory.mktemp("data"), img_dim=IMG_DIM, num_classes=NUM_CLASSES,
                               num_ref=NUM_REF, n_train=20, n_val=8, n_all=15, scale=3.0)


def train_args(data_dir, run_dir, n_step=N_STEP, val_interval=VAL_INTERVAL):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--data_dir=" + data_dir,
            "--checkpoint_dir=" + os.path.join(run_dir, "ckpt"), "--log_dir=" + os.path.join(run_dir, "log"),
            "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF, "--batch_size_sup=4", "--batch_size_unsup=2",
            "--val_batch_size=4", "--n_step=%d" % n_step, "--val_interval=%d" % val_interval,
            "--log_interval=1", "--learning_rate=0.05", "--dropout_rate=0", "--seed=7"]


# One kill in the default suite; ten in a row in the slow suite (pytest -m slow).
@pytest.mark.parametrize("num_kills", [1, pytest.param(NUM_KILLS, marks=pytest.mark.slow)])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, data_dir, num_kills):
    # The uninterrupted run goes on beside the interrupted ones (2 processes on 2 cores).
    reference_dir = str(tmp_path / "reference")
    reference = subprocess.Popen(train_args(data_dir, reference_dir), cwd=ROOT, env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    killed_dir = str(tmp_path / "killed")
    rng = np.random.default_rng(2024)
    # Kill points: after the log line of a random step (some before the first checkpoint),
    # plus a random delay so that kills also land inside validation and checkpoint writes.
    targets = np.sort(rng.choice(np.arange(1, N_STEP), num_kills, replace=False))
    delays = rng.uniform(0.0, 0.05, num_kills)
    killed_mid_training = 0
    leftovers = set()  # temporary files a kill left behind (reported, not an error)
    for target, delay in zip(targets, delays):
        def should_stop(step, target=target, delay=delay):
            if step >= target:
                time.sleep(delay)
                return signal.SIGKILL
            return None

        proc, last_step = run_until(train_args(data_dir, killed_dir), STEP_LINE, should_stop)
        if proc.returncode == -signal.SIGKILL:
            killed_mid_training += 1
        else:
            assert proc.returncode == 0  # it reached n_step before the kill
        for step in checkpoint_steps(os.path.join(killed_dir, "ckpt")):
            read_all(os.path.join(killed_dir, "ckpt", "ckpt-%d" % step))  # readable after every kill
        if proc.returncode == -signal.SIGKILL:
            leftovers.update(p for p in glob.glob(os.path.join(killed_dir, "ckpt", "**", "*"), recursive=True)
                             if "_temp" in os.path.basename(p) or p.endswith(".tmp"))
    assert killed_mid_training >= num_kills // 2, killed_mid_training

    proc, _ = run_until(train_args(data_dir, killed_dir), STEP_LINE, lambda step: None)
    assert proc.returncode == 0
    assert reference.wait(timeout=300) == 0

    steps = checkpoint_steps(os.path.join(killed_dir, "ckpt"))
    assert steps[-1] == N_STEP
    for step in steps:
        values = read_all(os.path.join(killed_dir, "ckpt", "ckpt-%d" % step))
        assert int(values["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == step
    for prefix in glob.glob(os.path.join(killed_dir, "ckpt", "best", "ckpt-*.index")):
        read_all(prefix[:-len(".index")])

    resumed = read_all(os.path.join(killed_dir, "ckpt", "ckpt-%d" % N_STEP))
    uninterrupted = read_all(os.path.join(reference_dir, "ckpt", "ckpt-%d" % N_STEP))
    assert resumed.keys() == uninterrupted.keys()
    max_diff = 0.0
    compared = 0
    for name, value in uninterrupted.items():
        if name.startswith("model/") or name.startswith("optimizer/"):
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                max_diff = max(max_diff, float(np.max(np.abs(resumed[name] - value), initial=0.0)))
                compared += 1
    print("kill/resume: %d kills mid-training at steps >= %s; %d tensors compared; max abs weight "
          "difference %.3g; temporary files left by kills: %s"
          % (killed_mid_training, targets.tolist(), compared, max_diff, sorted(leftovers) or "none"))
    assert compared >= 10
    assert max_diff <= 1e-5


def test_sigterm_saves_a_checkpoint_at_the_current_step(tmp_path, data_dir):
    run_dir = str(tmp_path / "run")
    # Checkpoints at steps 10, 20, ...; the SIGTERM is sent after step 13's log line, so it
    # normally lands between 10 and 20 and must give a checkpoint past step 10.
    proc, last_step = run_until(train_args(data_dir, run_dir, n_step=100000, val_interval=10), STEP_LINE,
                                lambda step: signal.SIGTERM if step >= 13 else None)
    assert proc.returncode == 0
    steps = checkpoint_steps(os.path.join(run_dir, "ckpt"))
    newest = steps[-1]
    assert steps[0] == 10 and newest >= last_step >= 13, steps
    assert set(steps) == set(range(10, newest, 10)) | {newest}  # the SIGTERM checkpoint is the only extra
    values = read_all(os.path.join(run_dir, "ckpt", "ckpt-%d" % newest))
    assert int(values["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == newest
    print("SIGTERM after step %d's log line: checkpoints %s" % (last_step, steps))
