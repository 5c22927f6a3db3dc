"""Every row of every input is scored in every mode: inference.py --mode=val and
--mode=calibrate, and train.py's validation, with a last partial batch and with fewer rows
than one batch. The expected accuracies are computed here with NumPy over ALL rows, from
similarities of the Keras model (TensorFlow), not from the tool's NumPy scorer."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from cleannet_fixtures import write_cleannet_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
IMG_DIM, NUM_REF, CLASS_NAMES = 6, 2, ["cat", "dog", "eel"]
THRESHOLD = 0.1  # --val_sim_thres's default


def write_val(path, n, seed):
    rng = np.random.default_rng(seed)
    rows = np.column_stack([rng.random((n, IMG_DIM)) * 3, rng.integers(0, len(CLASS_NAMES), n),
                            rng.integers(0, 2, n)]).astype(np.float32)
    np.save(path, rows)
    return rows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random CleanNet checkpoint (ckpt-7), ref.npy and classes.txt."""
    import tensorflow as tf

    from cleannet import checkpoints
    from cleannet.model import CleanNet

    root = tmp_path_factory.mktemp("every_row")
    (root / "data").mkdir()
    rng = np.random.default_rng(0)
    np.save(root / "data" / "ref.npy", (rng.random((len(CLASS_NAMES), NUM_REF, IMG_DIM)) * 3).astype(np.float32))
    (root / "classes.txt").write_text("".join(n + "\n" for n in CLASS_NAMES))
    tf.keras.utils.set_random_seed(3)
    model = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
    step = tf.Variable(7, dtype=tf.int64)
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model, step), str(root / "ckpt"), 3).save(
        checkpoint_number=7)
    return root


def keras_similarities(checkpoint_dir, rows, reference):
    """CleanNet's cosine of every row, by the original per-sample path in TensorFlow."""
    from cleannet.checkpoints import load_trained_model
    from cleannet.scoring import score_per_sample

    model, _, _ = load_trained_model(str(checkpoint_dir), IMG_DIM, NUM_REF, "log")
    return score_per_sample(model, rows[:, :IMG_DIM], rows[:, IMG_DIM].astype(np.int32), reference)


def inference(root, *extra):
    args = [sys.executable, os.path.join(ROOT, "inference.py"), "--checkpoint_dir=%s" % (root / "ckpt"),
            "--data_dir=%s" % (root / "data"), "--class_list=%s" % (root / "classes.txt"),
            "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF] + list(extra)
    return subprocess.run(args, capture_output=True, text=True, env=ENV)


@pytest.mark.parametrize("n_val, batch_size", [(135, 64), (3, 64)])
def test_val_mode_scores_every_row(model_dir, tmp_path, n_val, batch_size):
    """135 rows in batches of 64 (128 were scored) and 3 rows, fewer than one batch (refused)."""
    rows = write_val(model_dir / "data" / "val.npy", n_val, seed=n_val)
    out = tmp_path / "val.txt"
    result = inference(model_dir, "--mode=val", "--batch_size=%d" % batch_size, "--output_file=%s" % out)
    assert result.returncode == 0, result.stderr[-2000:]
    written = np.loadtxt(out, ndmin=1)
    cos = keras_similarities(model_dir / "ckpt", rows, np.load(model_dir / "data" / "ref.npy"))
    assert written.shape == (n_val,)
    np.testing.assert_allclose(written, cos, atol=1e-5)
    expected = np.mean((cos >= THRESHOLD) == (rows[:, IMG_DIM + 1] == 1))
    assert float(result.stdout.strip().split("=")[-1]) == pytest.approx(expected, abs=1e-6)
    assert "(%d samples)" % n_val in result.stderr


def test_val_smaller_than_a_batch_is_scored_whole(model_dir, tmp_path):
    """The default --batch_size=64 with 5 rows: scored (it was refused), calibration too."""
    rows = write_val(model_dir / "data" / "val.npy", 5, seed=11)
    out = tmp_path / "val.txt"
    result = inference(model_dir, "--mode=val", "--output_file=%s" % out)
    assert result.returncode == 0, result.stderr[-2000:]
    cos = keras_similarities(model_dir / "ckpt", rows, np.load(model_dir / "data" / "ref.npy"))
    expected = np.mean((cos >= THRESHOLD) == (rows[:, IMG_DIM + 1] == 1))
    assert float(result.stdout.strip().split("=")[-1]) == pytest.approx(expected, abs=1e-6)
    calibrated = inference(model_dir, "--mode=calibrate")
    assert calibrated.returncode == 0, calibrated.stderr[-2000:]
    stored = json.load(open(model_dir / "ckpt" / "calibration.json"))
    assert stored["val_samples"] == 5


@pytest.mark.slow
def test_train_validates_on_every_row(tmp_path):
    """train.py's val/acc is the accuracy over all 10 val rows (batches 4, 4, 2), also with a
    val.npy smaller than --val_batch_size (it was refused)."""
    from cleannet.checkpoints import load_inference_model
    from cleannet.scoring import ClassEmbeddingScorer

    data = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=3, num_ref=NUM_REF, n_train=8,
                               n_val=10, seed=4)
    for val_batch_size in (4, 64):
        ckpt = tmp_path / ("ckpt%d" % val_batch_size)
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "train.py"), "--data_dir=%s" % data, "--checkpoint_dir=%s" % ckpt,
             "--log_dir=%s" % (tmp_path / ("log%d" % val_batch_size)), "--img_dim=%d" % IMG_DIM,
             "--num_ref=%d" % NUM_REF, "--batch_size_sup=4", "--batch_size_unsup=0",
             "--val_batch_size=%d" % val_batch_size, "--n_step=2", "--val_interval=2", "--learning_rate=0.5"],
            capture_output=True, text=True, env=ENV)
        assert result.returncode == 0, result.stderr[-3000:]
        logged = float(re.findall(r"step 2: val/loss = \S+, val/acc = (\S+)", result.stderr)[-1])
        val = np.load(os.path.join(data, "val.npy"))
        model, step, _ = load_inference_model(str(ckpt), IMG_DIM, NUM_REF, "log")
        assert step == 2
        cos = ClassEmbeddingScorer(model, np.load(os.path.join(data, "ref.npy"))).score(
            val[:, :IMG_DIM], val[:, IMG_DIM].astype(np.int32))
        correct = (cos >= THRESHOLD) == (val[:, IMG_DIM + 1] == 1)
        assert logged == pytest.approx(np.mean(correct), abs=1e-6)
