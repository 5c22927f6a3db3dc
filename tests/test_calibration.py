"""The relative decision's calibration (cleannet.calibration) and inference.py's
--mode=calibrate / --decision=relative end to end on a randomly initialised model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cleannet.calibration import (CALIBRATION_FILE, Calibration, best_cut, calibrate, read_calibration,
                                  write_calibration)
from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
IMG_DIM, NUM_REF, CLASS_NAMES = 12, 3, ["cat", "dog", "bird", "fish"]


def brute_force_errors(values, labels):
    """Fewest errors of 1[value ≥ cut] over every cut at and between the values."""
    grid = np.concatenate([values, values + 1e-9, [values.max() + 1]])
    return min(int(np.sum((values >= cut) != (labels == 1))) for cut in grid)


def test_best_cut_known_case():
    correct = [0.3, 0.2, 0.1, -0.05]
    wrong = [-0.3, -0.2, -0.15, -0.02, 0.0]
    values = np.array(correct + wrong)
    labels = np.array([1] * 4 + [0] * 5)
    cut, errors = best_cut(values, labels)
    # Sorted: -.3w -.2w -.15w -.05c -.02w 0w .1c .2c .3c: cutting between 0 and 0.1 misjudges only
    # the correct label at -0.05; any other cut misjudges at least two.
    assert cut == pytest.approx(0.05)
    assert errors == 1


def test_best_cut_ties_go_to_the_preferred_value_and_edges_are_finite():
    values = np.array([-0.5, -0.4, 0.4, 0.5])
    cut, errors = best_cut(values, np.array([0, 0, 1, 1]))
    assert errors == 0 and cut == pytest.approx(0.0)  # every cut in (-0.4, 0.4) is perfect; 0 is the midpoint
    cut, errors = best_cut(values, np.ones(4))
    assert errors == 0 and np.isfinite(cut) and cut <= -0.5
    cut, errors = best_cut(values, np.zeros(4))
    assert errors == 0 and np.isfinite(cut) and cut > 0.5


@pytest.mark.parametrize("seed", range(5))
def test_best_cut_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=60), 1)  # rounding makes ties
    labels = (values + rng.normal(scale=0.7, size=60) > 0).astype(int)
    cut, errors = best_cut(values, labels)
    assert errors == brute_force_errors(values, labels)
    assert errors == int(np.sum((values >= cut) != (labels == 1)))


def test_threshold_is_chosen_only_when_it_helps():
    # Three correct labels (high similarity, margin 0.2), two wrong ones that no other class
    # beats (margin 0.3) but with a low similarity, two wrong ones beaten by another class.
    similarity = np.array([0.8, 0.8, 0.8, 0.05, 0.05, 0.7, 0.7])
    margin = np.array([0.2, 0.2, 0.2, 0.3, 0.3, -0.3, -0.3])
    vlabels = np.array([1, 1, 1, 0, 0, 0, 0])
    min_margin, threshold, error = calibrate(similarity, margin, vlabels)
    assert threshold is None and error == pytest.approx(2 / 7) and -0.3 < min_margin < 0.2
    min_margin, threshold, error = calibrate(similarity, margin, vlabels, with_threshold=True)
    assert error == 0.0 and 0.05 < threshold <= 0.7 and -0.3 < min_margin <= 0.2


def test_calibration_file_round_trip_and_refusals(tmp_path):
    calibration = Calibration("references", -0.05, None, "ckpt-1500", 0.03, 135)
    path = write_calibration(tmp_path, calibration)
    assert json.load(open(path))["min_margin"] == -0.05
    assert read_calibration(tmp_path, "/x/ckpt-1500", "references", "CMD") == calibration
    with pytest.raises(InputError, match="ckpt-1500 but the model is ckpt-2000; run CMD"):
        read_calibration(tmp_path, "/x/ckpt-2000", "references", "CMD")
    with pytest.raises(InputError, match="class_score=references"):
        read_calibration(tmp_path, "/x/ckpt-1500", "embedding", "CMD")
    with pytest.raises(InputError, match="no calibration.json.*run CMD"):
        read_calibration(tmp_path / "elsewhere", "/x/ckpt-1500", "references", "CMD")
    with pytest.raises(ValueError, match="non-finite"):
        write_calibration(tmp_path, Calibration("references", float("nan"), None, "ckpt-1500", 0.0, 1))
    assert json.load(open(path))["min_margin"] == -0.05  # the refused write left the file alone
    (tmp_path / CALIBRATION_FILE).write_text(open(path).read().replace("-0.05", "NaN"))
    with pytest.raises(InputError, match="non-finite"):
        read_calibration(tmp_path, "/x/ckpt-1500", "references", "CMD")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random CleanNet checkpoint, ref.npy, val.npy and an all-samples TSV."""
    import tensorflow as tf

    from cleannet import checkpoints
    from cleannet.model import CleanNet

    root = tmp_path_factory.mktemp("calibrate")
    data_dir, ckpt_dir = root / "data", root / "ckpt"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    np.save(data_dir / "ref.npy", rng.random((4, NUM_REF, IMG_DIM)).astype(np.float32) * 3)
    val = np.concatenate([rng.random((40, IMG_DIM)) * 3, rng.integers(0, 4, (40, 1)), rng.integers(0, 2, (40, 1))], 1)
    np.save(data_dir / "val.npy", val.astype(np.float32))
    (root / "classes.txt").write_text("".join(n + "\n" for n in CLASS_NAMES))
    tf.keras.utils.set_random_seed(1)
    model = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
    step = tf.Variable(7, dtype=tf.int64)
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model, step), str(ckpt_dir), 3).save(checkpoint_number=7)
    with open(root / "input.tsv", "w") as f:
        for i in range(30):
            row = rng.random(IMG_DIM) * 3
            f.write("k%d\t%s\t%s\n" % (i, CLASS_NAMES[i % 4], ",".join("%.6g" % v for v in row)))
    return root


def inference(root, *extra):
    args = [sys.executable, os.path.join(ROOT, "inference.py"), "--checkpoint_dir=%s" % (root / "ckpt"),
            "--data_dir=%s" % (root / "data"), "--class_list=%s" % (root / "classes.txt"),
            "--image_feature_list=%s" % (root / "input.tsv"), "--img_dim=%d" % IMG_DIM,
            "--num_ref=%d" % NUM_REF, "--batch_size=8"] + list(extra)
    return subprocess.run(args, capture_output=True, text=True, env=ENV)


@pytest.mark.slow
def test_relative_decision_end_to_end(model_dir):
    out, weights = model_dir / "out.tsv", model_dir / "weights.tsv"
    refused = inference(model_dir, "--decision=relative", "--output_file=%s" % out)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error:")
    assert "no calibration.json" in refused.stderr and "--mode=calibrate" in refused.stderr
    assert not out.exists()

    calibrated = inference(model_dir, "--mode=calibrate")
    assert calibrated.returncode == 0, calibrated.stderr
    stored = json.load(open(model_dir / "ckpt" / CALIBRATION_FILE))
    assert stored["checkpoint"] == "ckpt-7" and stored["val_samples"] == 40
    assert np.isfinite(stored["min_margin"]) and stored["class_score"] == "references"

    done = inference(model_dir, "--decision=relative", "--output_format=tsv", "--output_file=%s" % out,
                     "--output_weights=%s" % weights)
    assert done.returncode == 0, done.stderr
    assert "sample weights" in done.stderr and str(weights) in done.stderr  # says where it wrote
    rows = [line.split("\t") for line in open(out).read().splitlines()]
    assert rows[0][5:] == ["best_other_class", "best_other_similarity", "margin", "suggested_class",
                          "class_score"]
    rows = rows[1:]
    assert len(rows) == 30
    margins = np.array([float(r[7]) for r in rows])
    verdicts = np.array([int(r[4]) for r in rows])
    np.testing.assert_array_equal(verdicts, (margins >= stored["min_margin"]).astype(int))
    assert all(r[5] in CLASS_NAMES and r[5] != r[2] for r in rows)
    assert all(r[8] == (r[5] if v == 0 and m < 0 else "") for r, v, m in zip(rows, verdicts, margins))
    hard = [int(line.split("\t")[3]) for line in open(weights).read().splitlines()[1:]]
    assert hard == verdicts.tolist()
