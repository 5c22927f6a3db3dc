"""scikit-learn's digits as a 32×32 RGB stand-in for CIFAR-10 with the same protocol."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_digits

from noise_model.data import digits
from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "noise_model", "digits.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    protocol = digits.prepare_digits(str(out), noise_level=0.5, num_test=360, seed=0)
    return out, protocol


def test_image_conversion_by_hand():
    # A digit image with a single bright pixel (value 16 → 255) in the top-left corner.
    image = np.zeros((1, 8, 8))
    image[0, 0, 0] = 16.0
    image[0, 7, 7] = 8.0
    out = digits.digits_to_images(image)
    assert out.shape == (1, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, ..., 0], out[0, ..., 1])
    np.testing.assert_array_equal(out[0, ..., 0], out[0, ..., 2])
    # Bilinear 4× upsampling with half-pixel centres: the output pixels whose centres fall
    # nearest the source pixel (0, 0) keep its value, 255; pixel (7, 7) holds 128 (8·255/16).
    assert out[0, 0, 0, 0] == 255 and out[0, 1, 1, 0] == 255
    assert out[0, 31, 31, 0] == 128
    assert out[0, 16, 16, 0] == 0
    # Two source pixels apart: a pixel 1.25 source pixels from (0, 0) is 0.
    assert out[0, 0, 7, 0] == 0


def test_splits_and_labels_match_sklearn(prepared):
    out, protocol = prepared
    source = load_digits()
    metadata = json.loads((out / "metadata.json").read_text())
    assert (metadata["dataset"], metadata["num_classes"], metadata["image_size"]) == ("digits", 10, 32)
    num_train = 1797 - 360
    num_clean = round(0.2 * num_train)
    sizes = {"clean_train": num_clean, "mixed_train": num_train,
             "ntype_train": int(num_clean * 0.8), "ntype_test": num_clean - int(num_clean * 0.8),
             "test": 360}
    assert metadata["split_sizes"] == sizes

    # Each test image, shrunk back to 8×8 and scaled to 0..16, is nearest to a digit of
    # the same class: the labels travelled with their images.
    test_images = np.load(out / "test_images.npy")
    test_labels = np.load(out / "test_labels.npy")
    assert test_images.shape == (360, 32, 32, 3)
    small = np.stack([cv2.resize(img[..., 0], (8, 8), interpolation=cv2.INTER_AREA)
                      for img in test_images]).astype(np.float64) * 16 / 255
    flat_source = source.images.reshape(len(source.images), -1)
    distances = ((small.reshape(360, 1, -1) - flat_source[None]) ** 2).sum(-1)
    nearest = source.target[np.argmin(distances, axis=1)]
    assert np.mean(nearest == test_labels[:, 0]) > 0.98
    np.testing.assert_array_equal(test_labels[:, 1:], -1)

    # Train and test together are all 1797 digits, each once.
    train_images = np.load(out / "mixed_train_images.npy")
    all_keys = {img.tobytes() for img in np.concatenate([train_images, test_images])}
    assert len(all_keys) >= 1797 - 20  # a few digits are pixel-identical duplicates

    # Clean training images: the first num_clean of the (shuffled) training order, with
    # their true class; the noise rate over all training labels is near the level 0.5.
    clean_labels = np.load(out / "clean_train_labels.npy")
    clean_images = np.load(out / "clean_train_images.npy")
    small = np.stack([cv2.resize(img[..., 0], (8, 8), interpolation=cv2.INTER_AREA)
                      for img in clean_images]).astype(np.float64) * 16 / 255
    distances = ((small.reshape(len(small), 1, -1) - flat_source[None]) ** 2).sum(-1)
    assert np.mean(source.target[np.argmin(distances, axis=1)] == clean_labels[:, 0]) > 0.98
    assert abs(metadata["actual_noise_rate"] - 0.5) < 0.06


def test_pipeline_on_digits(prepared):
    from noise_model.data import datasets

    out, _ = prepared
    data = datasets.make_dataset("digits", str(out), "mixed_train", 32, training=True, seed=0)
    images, labels = next(iter(data))
    assert images.shape == (32, 32, 32, 3) and labels.shape == (32, 3)
    # Mixed set: exactly one of (clean label, noisy label) is known per sample.
    labels = labels.numpy()
    np.testing.assert_array_equal((labels[:, 0] >= 0), (labels[:, 1] < 0))
    assert datasets.split_size("digits", str(out), "test") == 360


def test_cli(tmp_path):
    out = tmp_path / "prepared"
    result = subprocess.run([sys.executable, SCRIPT, "--output_dir=%s" % out, "--num_test=300",
                             "--num_clean=150", "--noise_level=0.2", "--seed=3"],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["split_sizes"]["test"] == 300
    assert metadata["split_sizes"]["clean_train"] == 150
    assert metadata["split_sizes"]["mixed_train"] == 1497
    np.testing.assert_allclose(np.diag(np.load(out / "matrix_q.npy")), 0.8)

    bad = subprocess.run([sys.executable, "-m", "noise_model.digits",
                          "--output_dir=%s" % (tmp_path / "bad"), "--num_test=5000"],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --num_test")


FLAG_ERRORS = [
    ("no_output_dir", [], ["--output_dir=None", "must have a value other than None"]),
    ("output_dir_empty", ["--output_dir="], ["--output_dir=: must not be empty"]),
    ("num_test_0", ["--num_test=0"], ["--num_test=0", "not a positive integer"]),
    ("num_clean_1", ["--num_clean=1"], ["--num_clean=1", "not integer >= 2"]),
    ("noise_level_above_1", ["--noise_level=1.5"], ["--noise_level=1.5", "not a number in the range [0.0, 1.0]"]),
    ("noise_level_inf", ["--noise_level=inf"], ["--noise_level=inf", "not a number in the range"]),
    ("noise_level_nan", ["--noise_level=nan"], ["--noise_level=nan", "must be a finite number"]),
    ("seed_negative", ["--seed=-2"], ["--seed=-2", "not a non-negative integer"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in FLAG_ERRORS], ids=[case[0] for case in FLAG_ERRORS])
def test_cli_flag_errors(tmp_path, args, expected):
    """A bad flag value is one stderr line naming the flag and the value, exit 2, nothing written."""
    out = ["--output_dir=%s" % (tmp_path / "out")] if args else []
    result = subprocess.run([sys.executable, SCRIPT] + out + args, capture_output=True, text=True, env=ENV,
                            timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(part in lines[0] for part in expected), lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_fraction():
    with pytest.raises(InputError, match="clean_fraction"):
        digits.prepare_digits("/nonexistent", clean_fraction=1.5)
