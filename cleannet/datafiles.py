"""Loaders for the converted CleanNet data files (train.npy, val.npy, all.npy, ref.npy).

Layouts (written by util/convert_data.py and util/find_reference.py, docs/originals.md#cleannet-files-and-formats):
  train.npy / val.npy: [N, h+2] = feature (h), class id, vlabel (0 or 1).
  all.npy: [N, h+1] = feature (h), class id; rows grouped by class in ascending class id
    (classes with no rows simply have none). Legacy layouts of the original are read too:
    a pickled 1-D object array whose element c holds the feature vectors of class c
    (only with allow_pickle=True: a pickle can run code when loaded), and the plain
    [C, n, h] array the original's np.save produced when every class had n samples.
  ref.npy: [C, num_ref, h].

Every problem with a file is an `InputError` naming the file and the field (column or
array) at fault; rows of a .npy file are counted from 0.
"""

from __future__ import annotations

import os

import numpy as np

from noisylabels.errors import InputError
from noisylabels.fileio import load_npy



def _feature_width(array: np.ndarray, path: str, img_dim: int | None, extra: tuple) -> int:
    """h, the feature columns of a 2-d [N, h + len(extra)] array; InputError naming the shape otherwise.

    Args:
      extra: the names of the columns after the features (e.g. ("class id", "vlabel")).
    """
    width, n_extra = array.shape[1], len(extra)
    if width < n_extra + 1 or (img_dim is not None and width != img_dim + n_extra):
        expected = "[N, h+%d]" % n_extra if img_dim is None else "[N, %d] (img_dim %d + %s)" % (
            img_dim + n_extra, img_dim, " + ".join(extra))
        raise InputError("has shape %s, expected %s" % (array.shape, expected), path=path, field="shape")
    return width - n_extra


def load_verified(path: str | os.PathLike,
                  img_dim: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loads train.npy / val.npy.

    Args:
      path: a [N, h+2] .npy file (feature, class id, vlabel).
      img_dim: the feature dimension h it must have (None: take it from the file).

    Returns:
      (features float32 [N, h], class_ids int32 [N], vlabels float32 [N] of 0.0 / 1.0).
    """
    array = load_npy(path, ndim=2, finite=False)  # every column is checked below
    _check_real(array, path)
    h = _feature_width(array, path, img_dim, ("class id", "vlabel"))
    features = np.ascontiguousarray(array[:, :h], dtype=np.float32)
    _check_finite(features, path, "feature")
    class_ids = _class_id_column(array[:, h], path, "class id (column %d)" % h)
    vlabels = np.asarray(array[:, h + 1], dtype=np.float32)
    bad = np.flatnonzero((vlabels != 0) & (vlabels != 1))
    if bad.size:
        raise InputError("row %d has vlabel %g, expected 0 or 1" % (bad[0], array[bad[0], h + 1]),
                         path=path, field="vlabel (column %d)" % (h + 1))
    return features, class_ids, vlabels


def load_all(path: str | os.PathLike, img_dim: int | None,
             allow_pickle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Loads all.npy (all samples, grouped by class).

    Our layout is memory-mapped (read-only), so a large file is not read whole: the
    returned features are then a read-only view of the file; index rows to copy them.

    Args:
      path: all.npy in our layout [N, h+1], or a legacy layout (module docstring).
      img_dim: the feature dimension h it must have (None: take it from the file).
      allow_pickle: the user's explicit permission to read a legacy pickled file.

    Returns:
      (features float32 [N, h], class_ids int32 [N], non-decreasing).
    """
    if allow_pickle and _holds_objects(path):
        array = _load_legacy_pickle(path)
    else:
        array = load_npy(path, mmap_mode=None if _holds_objects(path) else "r")
    if array.dtype == object:
        return _load_all_legacy_pickled(array, path, img_dim)
    _check_real(array, path)
    if array.ndim == 3:
        return _load_all_legacy_equal(array, path, img_dim)
    if array.ndim != 2:
        raise InputError("has shape %s, expected [N, h+1]" % (array.shape,), path=path,
                         field="shape")
    h = _feature_width(array, path, img_dim, ("class id",))
    field = "class id (column %d)" % h
    class_ids = _class_id_column(array[:, h], path, field)
    unsorted = np.flatnonzero(np.diff(class_ids) < 0)
    if unsorted.size:
        row = unsorted[0] + 1
        raise InputError("rows are not grouped by class: row %d has class id %d after %d "
                         "(convert the TSV again with util/convert_data.py --split=all)"
                         % (row, class_ids[row], class_ids[row - 1]), path=path, field=field)
    features = array[:, :h]
    if features.dtype != np.float32:
        features = np.asarray(features, dtype=np.float32)
    return features, class_ids


def load_ref(path: str | os.PathLike, img_dim: int | None, num_ref: int | None) -> np.ndarray:
    """Loads ref.npy.

    Args:
      path: a [C, num_ref, img_dim] .npy file.
      img_dim: feature dimension h (None: any).
      num_ref: references per class (None: any).

    Returns:
      float32 [C, num_ref, img_dim].
    """
    array = load_npy(path, ndim=3, finite=False)  # checked below
    _check_real(array, path)
    if ((num_ref is not None and array.shape[1] != num_ref)
            or (img_dim is not None and array.shape[2] != img_dim)):
        raise InputError("has shape %s, expected [num_class, %s, %s] (num_ref, img_dim)"
                         % (array.shape, num_ref if num_ref is not None else "num_ref",
                            img_dim if img_dim is not None else "img_dim"),
                         path=path, field="shape")
    ref = np.asarray(array, dtype=np.float32)
    _check_finite(ref.reshape(len(ref), -1), path, "reference")
    return ref


def refuse_negative_for_log(features: np.ndarray, path: str, embed_norm: str,
                            line_numbers: np.ndarray | None = None) -> None:
    """embed_norm=log takes log(x + 1): negative features would give NaN scores.

    Args:
      features: float [n, h].
      path: the file they come from.
      embed_norm: the model's embedding normalisation; only "log" is checked.
      line_numbers: int [n], the 1-based text line of each row (TSV), or None (.npy:
        rows are named from 0).
    """
    if embed_norm != "log" or not np.size(features):
        return
    bad = np.flatnonzero((np.asarray(features) < 0).any(axis=1))
    if bad.size:
        row = bad[0]
        where = dict(line=int(line_numbers[row])) if line_numbers is not None else {}
        prefix = "" if line_numbers is not None else "row %d: " % row
        raise InputError("%shas a negative feature (%g); --embed_norm=log computes log(x + 1) and needs "
                         "non-negative features: use --embed_norm=l2norm or no_norm"
                         % (prefix, float(np.min(features[row]))), path=path, field="feature", **where)


def check_class_ids(class_ids: np.ndarray, num_classes: int, path: str) -> None:
    """Raises InputError unless every class id is in [0, num_classes).

    Use it where a file's class ids must fit another file (e.g. train.npy vs ref.npy).
    """
    class_ids = np.asarray(class_ids)
    bad = np.flatnonzero((class_ids < 0) | (class_ids >= num_classes))
    if bad.size:
        raise InputError("row %d has class id %d, but there are only %d classes (ids 0..%d): "
                         "does the file match the class list and ref.npy?"
                         % (bad[0], class_ids[bad[0]], num_classes, num_classes - 1),
                         path=path, field="class id")


def class_offsets(class_ids: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Start offsets of each class in grouped (sorted) class ids.

    Args:
      class_ids: int [N], non-decreasing (the all.npy layout).
      num_classes: C; None: max class id + 1.

    Returns:
      int64 [C+1]: rows of class c are [offsets[c], offsets[c+1]); classes with no rows
      have offsets[c] == offsets[c+1]; offsets[C] == N.
    """
    class_ids = np.asarray(class_ids)
    if class_ids.size and np.any(np.diff(class_ids) < 0):
        raise ValueError("class ids are not grouped (non-decreasing)")
    if num_classes is None:
        num_classes = int(class_ids[-1]) + 1 if class_ids.size else 0
    if class_ids.size and (class_ids[0] < 0 or class_ids[-1] >= num_classes):
        raise ValueError("class ids must be in [0, %d)" % num_classes)
    return np.searchsorted(class_ids, np.arange(num_classes + 1), side="left").astype(np.int64)


def _check_real(array, path):
    if array.dtype == bool or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError("has dtype %s, expected real numbers" % array.dtype, path=path,
                         field="dtype")


def _check_finite(values, path, field):
    """values [N, k]; raises InputError naming the first row holding nan or inf."""
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise InputError("row %d holds nan or inf" % bad[0], path=path, field=field)


def _class_id_column(column, path, field):
    """A float column of class ids as int32 [N]; InputError unless non-negative integers."""
    column = np.asarray(column)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(column) | (column < 0) | (column != np.round(column)) | (
            column > np.iinfo(np.int32).max)
    bad = np.flatnonzero(bad)
    if bad.size:
        raise InputError("row %d has class id %g, expected a non-negative integer"
                         % (bad[0], column[bad[0]]), path=path, field=field)
    return column.astype(np.int32)


def _holds_objects(path):
    """True if the .npy header says the file is a pickled object array (False if unsure)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                _, _, dtype = np.lib.format.read_array_header_2_0(f)
        return dtype.hasobject
    except Exception:  # not a .npy file: load_npy reports it
        return False


def _load_legacy_pickle(path):
    """np.load with pickles allowed (the caller has the user's permission).

    encoding="latin1" also reads pickles written by Python 2, which the original may
    have run under.
    """
    try:
        array = np.load(path, allow_pickle=True, encoding="latin1")
    except Exception as err:  # unpickling can fail in many ways
        raise InputError("not a readable .npy file (%s: %s)" % (type(err).__name__, err),
                         path=path, field="all.npy") from None
    if not isinstance(array, np.ndarray):
        if hasattr(array, "close"):
            array.close()
        raise InputError("expected a single .npy array", path=path, field="all.npy")
    return array


def _load_all_legacy_pickled(array, path, img_dim):
    """The original's layout: 1-D object array, element c = the feature vectors of class c."""
    if array.ndim != 1:
        raise InputError("is an object array of shape %s, expected the legacy layout: one "
                         "list of feature vectors per class" % (array.shape,), path=path,
                         field="shape")
    blocks = []
    for class_id, samples in enumerate(array):
        field = "class %d" % class_id
        try:
            block = np.asarray(samples if samples is not None else [], dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise InputError("not a list of equal-length feature vectors (%s)" % err,
                             path=path, field=field) from None
        if block.size == 0:
            block = block.reshape(0, img_dim if img_dim is not None else 0)
        if block.ndim == 1:  # a single feature vector
            block = block[None, :]
        if block.ndim != 2:
            raise InputError("has feature array of shape %s, expected [n, h]" % (block.shape,),
                             path=path, field=field)
        blocks.append(block)
    widths = {b.shape[1] for b in blocks if len(b)}
    if img_dim is None:
        img_dim = widths.pop() if len(widths) == 1 else None
        if img_dim is None:
            raise InputError("classes have feature vectors of different lengths %s"
                             % sorted(widths) if widths else "holds no feature vectors",
                             path=path, field="shape")
    for class_id, block in enumerate(blocks):
        if len(block) and block.shape[1] != img_dim:
            raise InputError("feature vectors have %d values, expected %d (img_dim)"
                             % (block.shape[1], img_dim), path=path, field="class %d" % class_id)
    blocks = [b.reshape(len(b), img_dim) for b in blocks]
    features = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, img_dim), np.float32)
    class_ids = np.repeat(np.arange(len(blocks), dtype=np.int32), [len(b) for b in blocks])
    _check_finite(features, path, "feature")
    return features, class_ids


def _load_all_legacy_equal(array, path, img_dim):
    """The original's layout when every class had n samples: a plain [C, n, h] array."""
    num_classes, per_class, h = array.shape
    if img_dim is not None and h != img_dim:
        raise InputError("has shape %s, expected [N, %d] or the legacy [num_class, n, %d]"
                         % (array.shape, img_dim + 1, img_dim), path=path, field="shape")
    features = np.asarray(array, dtype=np.float32).reshape(num_classes * per_class, h)
    class_ids = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    return features, class_ids
