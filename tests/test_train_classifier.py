"""Tests for train_classifier.py: weighting by CleanNet's sample weights helps; bad joins fail."""

import os
import subprocess
import sys

import numpy as np
import pytest

from util.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES, DIM = 4, 6
NAMES = ["c%d" % i for i in range(NUM_CLASSES)]


def write_tsv(path, keys, labels, features):
    with open(path, "w") as f:
        for key, label, row in zip(keys, labels, features):
            f.write("%s\t%s\t%s\n" % (key, NAMES[label], ",".join("%.6g" % v for v in row)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Gaussian classes; 45% of each class's training labels moved to the next class.

    Weights: soft and hard weight 0 exactly for the wrong labels, 1 for the right ones.
    """
    root = tmp_path_factory.mktemp("clf")
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1.0, (NUM_CLASSES, DIM))

    def sample(n):
        truth = rng.integers(0, NUM_CLASSES, n)
        return truth, (centres[truth] + rng.normal(0, 0.8, (n, DIM))).astype(np.float32)

    truth, features = sample(1200)
    wrong = rng.random(len(truth)) < 0.45
    noisy = np.where(wrong, (truth + 1) % NUM_CLASSES, truth)
    keys = ["k%04d" % i for i in range(len(truth))]
    write_tsv(root / "train.tsv", keys, noisy, features)
    test_truth, test_features = sample(600)
    write_tsv(root / "test.tsv", ["t%d" % i for i in range(600)], test_truth, test_features)
    (root / "classes.txt").write_text("".join(n + "\n" for n in NAMES))
    with open(root / "weights.tsv", "w") as f:
        f.write("key\tclass_name\tsoft_weight\thard_weight\n")
        for key, label, bad in zip(keys, noisy, wrong):
            f.write("%s\t%s\t%s\t%d\n" % (key, NAMES[label], "0" if bad else "0.9", int(not bad)))
    return root


def run_classifier(data, weighting, **kwargs):
    from train_classifier import train_classifier

    args = dict(test_tsv=str(data / "test.tsv"), weights_file=str(data / "weights.tsv"), weighting=weighting,
                epochs=8, batch_size=64, learning_rate=0.01, seed=3)
    args.update(kwargs)
    return train_classifier(str(data / "train.tsv"), str(data / "classes.txt"), **args)


def test_hard_weights_beat_no_weights(data):
    none = run_classifier(data, "none")
    hard = run_classifier(data, "hard")
    soft = run_classifier(data, "soft")
    # With 45% of labels moved to the next class the unweighted classifier confuses
    # neighbouring classes; dropping exactly the wrong labels recovers the clean classifier.
    assert hard > none + 0.1, (none, hard)
    assert soft > none + 0.1, (none, soft)


def test_missing_key_names_it(data, tmp_path):
    lines = (data / "weights.tsv").read_text().splitlines(True)
    short = tmp_path / "weights.tsv"
    short.write_text("".join(line for line in lines if not line.startswith("k0007\t")))
    with pytest.raises(InputError, match="k0007"):
        run_classifier(data, "hard", weights_file=str(short))


def test_class_mismatch_and_bad_header(data, tmp_path):
    lines = (data / "weights.tsv").read_text().splitlines(True)
    key, name = lines[1].split("\t")[:2]
    other = NAMES[(NAMES.index(name) + 1) % NUM_CLASSES]
    changed = tmp_path / "changed.tsv"
    changed.write_text("".join([lines[0], lines[1].replace(name, other)] + lines[2:]))
    with pytest.raises(InputError, match=key):
        run_classifier(data, "soft", weights_file=str(changed))
    headless = tmp_path / "headless.tsv"
    headless.write_text("".join(lines[1:]))
    with pytest.raises(InputError, match="header"):
        run_classifier(data, "soft", weights_file=str(headless))


def test_cli_writes_checkpoints_and_tensorboard(data, tmp_path):
    train_dir = tmp_path / "run"
    args = [sys.executable, os.path.join(ROOT, "train_classifier.py"), "--train_tsv=%s" % (data / "train.tsv"),
            "--test_tsv=%s" % (data / "test.tsv"), "--class_list=%s" % (data / "classes.txt"),
            "--weights_file=%s" % (data / "weights.tsv"), "--weighting=hard", "--epochs=2",
            "--hidden_units=8", "--train_dir=%s" % train_dir]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.strip().split("=")[-1])
    assert 0.0 <= accuracy <= 1.0
    assert os.path.exists(train_dir / "checkpoints" / "ckpt-2.index")
    import tensorflow as tf

    tags = set()
    for name in os.listdir(train_dir / "log"):
        for event in tf.compat.v1.train.summary_iterator(str(train_dir / "log" / name)):
            tags.update(v.tag for v in event.summary.value)
    assert {"train/loss", "train/accuracy", "test/accuracy"} <= tags
    # A missing key from the command line: exit 2, one line naming the key.
    bad = tmp_path / "w.tsv"
    bad.write_text("key\tclass_name\tsoft_weight\thard_weight\n")
    result = subprocess.run(args[:5] + ["--weights_file=%s" % bad, "--weighting=hard", "--epochs=1"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "k0000" in result.stderr.strip().splitlines()[-1]


def test_load_samples_from_npy(tmp_path):
    from train_classifier import load_samples

    table = np.array([[0.5, 1.5, 2, 1], [3.0, 4.0, 0, 0], [6.0, 7.0, 3, -1]], np.float32)  # verified layout, h=2
    np.save(tmp_path / "train.npy", table)
    keys, features, labels = load_samples(str(tmp_path / "train.npy"), NAMES, img_dim=2)
    assert keys == ["0", "1", "2"]
    np.testing.assert_array_equal(features, table[:, :2])
    np.testing.assert_array_equal(labels, [2, 0, 3])
    with pytest.raises(InputError, match="columns"):
        load_samples(str(tmp_path / "train.npy"), NAMES, img_dim=5)
    np.save(tmp_path / "bad.npy", np.array([[0.5, 9.0]], np.float32))
    with pytest.raises(InputError, match="class ids"):
        load_samples(str(tmp_path / "bad.npy"), NAMES, img_dim=1)


def test_resume_from_checkpoint(data, tmp_path):
    import tensorflow as tf

    run_classifier(data, "hard", epochs=2, train_dir=str(tmp_path))
    first = tf.train.load_checkpoint(str(tmp_path / "checkpoints" / "ckpt-2"))
    run_classifier(data, "hard", epochs=3, train_dir=str(tmp_path))
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-3")
    assert int(tf.train.load_checkpoint(str(tmp_path / "checkpoints" / "ckpt-3")).get_tensor(
        "epoch/.ATTRIBUTES/VARIABLE_VALUE")) == 3
    assert first.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 2
    with pytest.raises(InputError, match="resume"):  # another architecture in the same train_dir
        run_classifier(data, "hard", epochs=4, hidden_units=5, train_dir=str(tmp_path))
