"""Tests for cleannet/datafiles.py: loaders of train/val/all/ref .npy files."""

import numpy as np
import pytest

from cleannet import datafiles
from noisylabels.errors import InputError


def save(tmp_path, name, array, allow_pickle=False):
    path = str(tmp_path / name)
    np.save(path, array, allow_pickle=allow_pickle)
    return path


def test_load_verified(tmp_path):
    features = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    table = np.column_stack([features, [2, 0, 5], [1, 0, 1]]).astype(np.float32)
    path = save(tmp_path, "train.npy", table)
    got_features, class_ids, vlabels = datafiles.load_verified(path, 4)
    np.testing.assert_array_equal(got_features, features)
    np.testing.assert_array_equal(class_ids, [2, 0, 5])
    np.testing.assert_array_equal(vlabels, [1.0, 0.0, 1.0])
    assert (got_features.dtype, class_ids.dtype, vlabels.dtype) == (np.float32, np.int32,
                                                                    np.float32)
    assert got_features.flags.c_contiguous


@pytest.mark.parametrize("column, value, expected", [
    (5, 0.5, "vlabel (column 5): row 1 has vlabel 0.5, expected 0 or 1"),
    (5, -1, "vlabel (column 5): row 1 has vlabel -1, expected 0 or 1"),
    (4, 1.5, "class id (column 4): row 1 has class id 1.5, expected a non-negative integer"),
    (4, -2, "class id (column 4): row 1 has class id -2, expected a non-negative integer"),
    (0, np.nan, "feature: row 1 holds nan or inf"),
])
def test_load_verified_bad_values(tmp_path, column, value, expected):
    table = np.zeros((3, 6), np.float32)
    table[1, column] = value
    path = save(tmp_path, "train.npy", table)
    with pytest.raises(InputError) as info:
        datafiles.load_verified(path, 4)
    assert str(info.value) == "%s: %s" % (path, expected)


def test_load_verified_wrong_width(tmp_path):
    path = save(tmp_path, "train.npy", np.zeros((3, 6), np.float32))
    with pytest.raises(InputError, match=r"shape: has shape \(3, 6\), expected \[N, 2050\]"):
        datafiles.load_verified(path, 2048)


def test_load_all_our_layout(tmp_path):
    features = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    table = np.column_stack([features, [0, 0, 2, 2, 2]]).astype(np.float32)
    path = save(tmp_path, "all.npy", table)
    got, class_ids = datafiles.load_all(path, 3)
    np.testing.assert_array_equal(np.asarray(got), features)
    np.testing.assert_array_equal(class_ids, [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(datafiles.class_offsets(class_ids, 4), [0, 2, 2, 5, 5])


def test_load_all_refuses_ungrouped_rows(tmp_path):
    table = np.zeros((3, 3), np.float32)
    table[:, 2] = [1, 0, 1]
    path = save(tmp_path, "all.npy", table)
    with pytest.raises(InputError, match="row 1 has class id 0 after 1"):
        datafiles.load_all(path, 2)


def legacy_pickled(tmp_path, per_class):
    array = np.empty(len(per_class), dtype=object)
    for c, samples in enumerate(per_class):
        array[c] = [np.asarray(s, dtype=np.float64) for s in samples]
    return save(tmp_path, "legacy_all.npy", array, allow_pickle=True)


def test_legacy_pickled_layout_needs_permission(tmp_path):
    per_class = [[[1, 2], [3, 4]], [], [[5, 6]]]
    path = legacy_pickled(tmp_path, per_class)
    with pytest.raises(InputError, match="pickled object array.*--allow_pickle"):
        datafiles.load_all(path, 2)
    features, class_ids = datafiles.load_all(path, 2, allow_pickle=True)
    np.testing.assert_array_equal(features, np.array([[1, 2], [3, 4], [5, 6]], np.float32))
    np.testing.assert_array_equal(class_ids, [0, 0, 2])
    assert features.dtype == np.float32


def test_legacy_pickled_wrong_width(tmp_path):
    path = legacy_pickled(tmp_path, [[[1, 2]], [[3, 4, 5]]])
    with pytest.raises(InputError, match="class 1: feature vectors have 3 values, expected 2"):
        datafiles.load_all(path, 2, allow_pickle=True)


def test_legacy_equal_count_layout(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    path = save(tmp_path, "all.npy", array)
    features, class_ids = datafiles.load_all(path, 4)
    np.testing.assert_array_equal(features, array.reshape(6, 4))
    np.testing.assert_array_equal(class_ids, [0, 0, 0, 1, 1, 1])


def test_load_ref(tmp_path):
    ref = np.random.default_rng(0).random((3, 2, 5))
    path = save(tmp_path, "ref.npy", ref)
    got = datafiles.load_ref(path, 5, 2)
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    assert got.dtype == np.float32
    with pytest.raises(InputError, match=r"has shape \(3, 2, 5\), expected \[num_class, 4, 5\]"):
        datafiles.load_ref(path, 5, 4)
    with pytest.raises(InputError, match="expected 3 dimensions"):
        datafiles.load_ref(save(tmp_path, "flat.npy", np.zeros((3, 5))), 5, 2)


def test_check_class_ids(tmp_path):
    datafiles.check_class_ids(np.array([0, 3, 2]), 4, "train.npy")
    with pytest.raises(InputError) as info:
        datafiles.check_class_ids(np.array([0, 3, 4, 9]), 4, "train.npy")
    assert str(info.value).startswith("train.npy: class id: row 2 has class id 4, but there "
                                      "are only 4 classes")


def test_class_offsets():
    np.testing.assert_array_equal(datafiles.class_offsets([1, 1, 3]), [0, 0, 2, 2, 3])
    np.testing.assert_array_equal(datafiles.class_offsets([], 2), [0, 0, 0])
    with pytest.raises(ValueError):
        datafiles.class_offsets([1, 0])


def test_truncated_file(tmp_path):
    path = save(tmp_path, "train.npy", np.zeros((10, 6), np.float32))
    with open(path, "r+b") as f:
        f.truncate(150)
    with pytest.raises(InputError, match="train.npy"):
        datafiles.load_verified(path, 4)
