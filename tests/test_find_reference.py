"""Tests for util/find_reference.py: per-class k-means references."""

import functools
import os

import numpy as np
import pytest

import process_control

from cleannet.tools import find_reference
from noisylabels.errors import InputError


NUM_CLASSES, NUM_REF, DIM, PER_BLOB = 3, 4, 8, 30


def blobs(seed=0):
    """Per class, NUM_REF Gaussian blobs (std 0.05) around far-apart known centres.

    Returns features float32 [N, DIM] grouped by class, class ids [N], true centres
    [NUM_CLASSES, NUM_REF, DIM].
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, (NUM_CLASSES, NUM_REF, DIM))
    features, class_ids = [], []
    for c in range(NUM_CLASSES):
        points = centres[c][:, None, :] + 0.05 * rng.standard_normal((NUM_REF, PER_BLOB, DIM))
        points = points.reshape(-1, DIM)
        features.append(points[rng.permutation(len(points))])
        class_ids.append(np.full(len(points), c))
    return (np.concatenate(features).astype(np.float32), np.concatenate(class_ids),
            centres)


def assert_matches_centres(found, true_centres, tolerance=0.1):
    """Every found centre is within tolerance of a different true centre."""
    distances = np.linalg.norm(found[:, None, :] - true_centres[None, :, :], axis=-1)
    nearest = distances.argmin(axis=1)
    assert sorted(nearest) == list(range(len(true_centres)))
    assert distances.min(axis=1).max() < tolerance


@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.fixture(scope="module")
def serial_ref(data):
    features, class_ids, _ = data
    return find_reference.find_references(features, class_ids, NUM_CLASSES, NUM_REF, seed=0,
                                          num_workers=1)


def test_recovers_blob_centres(data, serial_ref):
    _, _, centres = data
    assert serial_ref.shape == (NUM_CLASSES, NUM_REF, DIM)
    assert serial_ref.dtype == np.float32
    for c in range(NUM_CLASSES):
        assert_matches_centres(serial_ref[c], centres[c])


def test_parallel_equals_serial(data, serial_ref):
    features, class_ids, _ = data
    parallel = find_reference.find_references(features, class_ids, NUM_CLASSES, NUM_REF,
                                              seed=0, num_workers=2)
    np.testing.assert_array_equal(parallel, serial_ref)


def test_small_class_error_names_class(data):
    features, class_ids, _ = data
    keep = np.concatenate([np.flatnonzero(class_ids != 1), np.flatnonzero(class_ids == 1)[:3]])
    keep.sort()
    with pytest.raises(InputError) as info:
        find_reference.find_references(features[keep], class_ids[keep], NUM_CLASSES, NUM_REF,
                                       class_names=["a", "b", "c"], path="all.npy")
    assert str(info.value).startswith("all.npy: class_name: class 'b' (id 1) has 3 samples, "
                                      "fewer than --num_ref=4")


def test_small_class_repeat_fallback(data, serial_ref):
    features, class_ids, _ = data
    small = np.flatnonzero(class_ids == 1)[:3]
    keep = np.sort(np.concatenate([np.flatnonzero(class_ids != 1), small]))
    ref = find_reference.find_references(features[keep], class_ids[keep], NUM_CLASSES,
                                         NUM_REF, small_class="repeat")
    np.testing.assert_array_equal(ref[1], features[small[[0, 1, 2, 0]]])
    np.testing.assert_array_equal(ref[0], serial_ref[0])  # other classes unchanged
    np.testing.assert_array_equal(ref[2], serial_ref[2])


def test_repeat_still_refuses_an_empty_class(data):
    features, class_ids, _ = data
    keep = class_ids != 2
    with pytest.raises(InputError, match="class '2' .* has no samples"):
        find_reference.find_references(features[keep], class_ids[keep], NUM_CLASSES, NUM_REF,
                                       small_class="repeat")


run_cli = functools.partial(process_control.run_cli, "util/find_reference.py")


@pytest.fixture
def inputs(tmp_path, data):
    features, class_ids, _ = data
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    np.save(tmp_path / "all.npy", np.column_stack([features, class_ids]).astype(np.float32))
    legacy = np.empty(NUM_CLASSES, dtype=object)
    for c in range(NUM_CLASSES):
        legacy[c] = list(features[class_ids == c])
    np.save(tmp_path / "legacy.npy", legacy, allow_pickle=True)
    return tmp_path


def cli_args(tmp_path, input_npy, out, *extra):
    return ["--class_list=%s" % (tmp_path / "classes.txt"), "--input_npy=%s" % input_npy,
            "--output_dir=%s" % out, "--num_ref=%d" % NUM_REF, "--img_dim=%d" % DIM] + list(extra)


def test_cli_parallel_matches_function(inputs, serial_ref):
    out = inputs / "out"
    proc = run_cli(*cli_args(inputs, inputs / "all.npy", out, "--num_workers=2"))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out / "ref.npy"), serial_ref)
    assert os.listdir(out) == ["ref.npy"]


def test_cli_legacy_pickle_needs_flag(inputs, serial_ref):
    out = inputs / "out"
    proc = run_cli(*cli_args(inputs, inputs / "legacy.npy", out, "--num_workers=1"))
    assert proc.returncode == 2
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("error: %s: " % (inputs / "legacy.npy")) and "--allow_pickle" in last
    assert not os.path.exists(out / "ref.npy")

    proc = run_cli(*cli_args(inputs, inputs / "legacy.npy", out, "--num_workers=1",
                             "--allow_pickle"))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out / "ref.npy"), serial_ref)


def test_cli_small_class_error(inputs):
    out = inputs / "out"
    proc = run_cli(*cli_args(inputs, inputs / "all.npy", out, "--num_ref=200"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith(
        "error: %s: class_name: class 'a' (id 0) has %d samples, fewer than --num_ref=200"
        % (inputs / "all.npy", NUM_REF * PER_BLOB)), proc.stderr
    assert not os.path.exists(out / "ref.npy")
