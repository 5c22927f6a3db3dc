"""train.py under tf.distribute on CPU: mirrored over two logical CPU devices and two
multi-worker processes on 127.0.0.1 train the same weights as a single-device run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from cleannet_fixtures import write_cleannet_data
from process_control import local_cluster_tf_configs
import tensorflow as tf

from cleannet.checkpoints import make_checkpoint, restore
from cleannet.model import CleanNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG_DIM, NUM_CLASSES, NUM_REF = 8, 3, 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cleannet_data(tmp_path_factory.mktemp("dist_data"), img_dim=IMG_DIM, num_classes=NUM_CLASSES,
                               num_ref=NUM_REF, n_train=40, n_val=16, n_all=60)


def train_command(data_dir, out_dir, extra=()):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--data_dir=%s" % data_dir,
            "--checkpoint_dir=%s" % (out_dir / "ckpt"), "--log_dir=%s" % (out_dir / "log"),
            "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF, "--batch_size_sup=8", "--batch_size_unsup=8",
            "--val_batch_size=8", "--n_step=12", "--val_interval=6", "--log_interval=6", "--learning_rate=0.05",
            "--seed=3"] + list(extra)


def env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def final_weights(checkpoint_dir, step=12):
    """The model weights of checkpoint ckpt-STEP, restored into a fresh CleanNet."""
    path = str(checkpoint_dir / ("ckpt-%d" % step))
    assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith("ckpt-12")
    model = CleanNet(NUM_REF, IMG_DIM).build_variables()
    restore(make_checkpoint(model, tf.Variable(0, dtype=tf.int64)), path, IMG_DIM, NUM_REF, "log", partial=True)
    return model.get_weights()


def max_difference(a, b):
    assert len(a) == len(b) == 17
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def single_device(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    result = subprocess.run(train_command(data_dir, out), capture_output=True, text=True, env=env())
    assert result.returncode == 0, result.stderr[-2000:]
    weights = final_weights(out / "ckpt")
    # The run trained: the weights moved between the checkpoints at steps 6 and 12, so
    # equal final weights below mean equal updates, not untouched initial values.
    assert max_difference(weights, final_weights(out / "ckpt", step=6)) > 1e-4
    return weights


def test_mirrored_two_cpu_replicas_equal_single_device(data_dir, single_device, tmp_path):
    result = subprocess.run(train_command(data_dir, tmp_path, ["--distribution=mirrored", "--num_cpu_replicas=2"]),
                            capture_output=True, text=True, env=env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Using MirroredStrategy with devices" in result.stderr
    assert max_difference(final_weights(tmp_path / "ckpt"), single_device) < 1e-5


@pytest.mark.slow
def test_multi_worker_two_processes_equal_single_device(data_dir, single_device, tmp_path):
    processes = []
    for tf_config in local_cluster_tf_configs(2):
        processes.append(subprocess.Popen(train_command(data_dir, tmp_path, ["--distribution=multi_worker"]),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=env(TF_CONFIG=tf_config)))
    outputs = [p.communicate(timeout=240) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-2000:]
    weights = final_weights(tmp_path / "ckpt")  # the chief's (worker 0) checkpoint
    assert max_difference(weights, single_device) < 1e-5
    assert os.path.isdir(tmp_path / "log" / "train")
