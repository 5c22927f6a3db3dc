"""The Python API's inputs: arrays checked up front, the data split, and the settings chosen
from the data size.

Everything here runs before any training: bad input is an `InputError` with one line
naming the array (`features`, `labels`, `verified`) and the first bad entry.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from cleannet.choices import EMBED_NORMS
from noisylabels.errors import InputError

MAX_NUM_REF = 32  # the paper's references per class
VAL_FRACTION = 0.2  # share of the verified samples kept for validation and calibration
MAX_BATCH = 32  # the paper's batch_size_sup and batch_size_unsup
MAX_VAL_BATCH = 64  # train.py's --val_batch_size
EPOCHS = 30  # auto n_step: passes over all samples at batch_size_sup, within [MIN_STEPS, MAX_STEPS]
MIN_STEPS, MAX_STEPS = 1000, 60000


def _to_numpy(values: Any) -> np.ndarray:
    """A NumPy array of an array, list, pandas Series or DataFrame."""
    return np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)


def check_features(features: Any) -> np.ndarray:
    """features [N, D] (array or DataFrame) → float32 [N, D], finite; InputError otherwise."""
    array = _to_numpy(features)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError("has shape %s, expected [N, D] with N, D >= 1" % (array.shape,), field="features")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError("has dtype %s, expected real numbers" % array.dtype, field="features")
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        row, column = bad[0]
        raise InputError("row %d, column %d is %s (not finite as float32); features must be finite"
                         % (row, column, array[row, column]), field="features")
    return array


def _category_labels(labels: Any) -> tuple[np.ndarray, list[str]] | None:
    """A pandas categorical (Series or Categorical): (codes, its categories as names)."""
    categorical = getattr(labels, "cat", None) or (labels if hasattr(labels, "codes") else None)
    if categorical is None or not hasattr(categorical, "categories"):
        return None
    return np.asarray(categorical.codes), [str(c) for c in categorical.categories]


def _check_names(names: Sequence[str]) -> None:
    """Class names as a class list holds them: distinct, non-empty, no tab or line break."""
    if len(set(names)) != len(names):
        raise InputError("holds a name twice", field="class_names")
    bad = [name for name in names if not name.strip() or any(c in name for c in "\t\r\n")]
    if bad:
        raise InputError("%r is empty or holds a tab or line break" % bad[0], field="class_names")


def check_labels(labels: Any, n: int, class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """labels [N] → (class ids int32 [N], class names [C]).

    labels: class indices in [0, C), or class names; C = len(class_names) when given, else
    (indices) max + 1 or (names) the sorted distinct names; a pandas categorical gives its
    categories. InputError for another length, a label outside the classes, duplicates.
    """
    names = None if class_names is None else [str(c) for c in class_names]
    if names is not None:
        _check_names(names)
    categories = _category_labels(labels) if names is None else None
    if categories is not None:
        array, names = categories
    else:
        array = _to_numpy(labels)
    if array.ndim != 1 or len(array) != n:
        raise InputError("has shape %s, expected [%d] (one label per row of features)" % (array.shape, n),
                         field="labels")
    if array.dtype.kind in "OUS":
        names = names if names is not None else sorted({str(v) for v in array})
        _check_names(names)
        index = {name: i for i, name in enumerate(names)}
        ids = np.array([index.get(str(v), -1) for v in array], dtype=np.int64)
        bad = np.flatnonzero(ids < 0)
        if bad.size:
            raise InputError("label %r at index %d is not one of the classes" % (str(array[bad[0]]), bad[0]),
                             field="labels")
        return ids.astype(np.int32), names
    if array.dtype.kind not in "iu":
        raise InputError("has dtype %s, expected integer class indices or class names" % array.dtype,
                         field="labels")
    names = names if names is not None else [str(c) for c in range(int(array.max()) + 1 if n else 0)]
    bad = np.flatnonzero((array < 0) | (array >= len(names)))
    if bad.size:
        raise InputError("label %d at index %d is outside the %d classes [0, %d)"
                         % (array[bad[0]], bad[0], len(names), len(names)), field="labels")
    return array.astype(np.int32), names


def check_verified(verified: Any, n: int) -> np.ndarray:
    """verified [N] of 1 (label verified correct), 0 (verified wrong), -1 (not verified) → int8 [N]."""
    array = _to_numpy(verified)
    if array.ndim != 1 or len(array) != n:
        raise InputError("has shape %s, expected [%d] (one flag per row of features)" % (array.shape, n),
                         field="verified")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise InputError("has dtype %s, expected the numbers 1, 0 or -1" % array.dtype, field="verified")
    bad = np.flatnonzero(~np.isin(array, (-1, 0, 1)))
    if bad.size:
        raise InputError("index %d has %r; expected 1 (label verified correct), 0 (verified wrong) or -1 "
                         "(not verified)" % (bad[0], array[bad[0]].item()), field="verified")
    if np.count_nonzero(array >= 0) < 2:
        raise InputError("has %d verified samples; training and validation need at least 2 (flags 1 or 0)"
                         % np.count_nonzero(array >= 0), field="verified")
    return array.astype(np.int8)


def split_verified(verified: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The verified samples (flag 0 or 1) split at random (seed) into training and validation.

    Returns:
      (train indices, val indices), each ascending; VAL_FRACTION of them (at least 1) in val.
    """
    candidates = np.flatnonzero(np.asarray(verified) >= 0)
    order = np.random.default_rng(seed).permutation(candidates)
    n_val = min(len(candidates) - 1, max(1, int(round(VAL_FRACTION * len(candidates)))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclasses.dataclass
class Settings:
    """The training settings the API chooses when they are not given (see `choose_settings`)."""
    num_ref: int
    n_step: int
    val_interval: int
    lr_update: int
    log_interval: int
    batch_size_sup: int
    batch_size_unsup: int
    val_batch_size: int
    embed_norm: str


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise InputError("must be a positive integer, got %r" % (value,), field=name)
    return None if value is None else int(value)


def choose_settings(features: np.ndarray, class_ids: np.ndarray, num_classes: int, n_train: int, n_val: int,
                    pool: np.ndarray, given: dict[str, Any], recipe_embed_norm: str | None = None) -> Settings:
    """Settings for a run on these data; the values in `given` (None: choose) are kept.

    num_ref: min(32, the smallest class's samples in the reference pool `pool` (indices));
    n_step: EPOCHS passes over the N samples at batch_size_sup, in [1000, 60000]; then
    val_interval n_step / 6, lr_update 2/3 n_step (as the quickstart); batch sizes
    min(32, rows available); val_batch_size min(64, n_val); embed_norm the recipe's
    (`recipe_embed_norm`, cleannet.config.RECIPES: "l2norm" for robust, as train.py
    --recipe=robust without --embed_norm), else "log" (the paper's) for non-negative
    features and "l2norm" for others.
    """
    given = {name: _positive(name, value) if name != "embed_norm" else value for name, value in given.items()}
    counts = np.bincount(class_ids[pool], minlength=num_classes)
    batch_sup = given.get("batch_size_sup") or min(MAX_BATCH, n_train)
    n_step = given.get("n_step") or int(np.clip(math.ceil(EPOCHS * len(features) / batch_sup / 100) * 100,
                                                MIN_STEPS, MAX_STEPS))
    embed_norm = (given.get("embed_norm") or recipe_embed_norm
                  or ("log" if float(features.min()) >= 0 else "l2norm"))
    if embed_norm not in EMBED_NORMS:
        raise InputError("must be one of %s, got %r" % ("|".join(EMBED_NORMS), embed_norm), field="embed_norm")
    settings = Settings(num_ref=given.get("num_ref") or max(1, min(MAX_NUM_REF, int(counts.min()))),
                        n_step=n_step, val_interval=max(1, n_step // 6), lr_update=max(1, n_step * 2 // 3),
                        log_interval=max(1, n_step // 10), batch_size_sup=batch_sup,
                        batch_size_unsup=given.get("batch_size_unsup") or min(MAX_BATCH, len(pool)),
                        val_batch_size=given.get("val_batch_size") or min(MAX_VAL_BATCH, n_val),
                        embed_norm=embed_norm)
    if settings.val_batch_size > n_val:
        raise InputError("is %d but only %d verified samples are kept for validation"
                         % (settings.val_batch_size, n_val), field="val_batch_size")
    chosen = {name: value for name, value in dataclasses.asdict(settings).items() if given.get(name) is None}
    logging.info("CleanNet settings chosen for %d samples, %d classes (%d verified for training, %d for "
                 "validation): %s", len(features), num_classes, n_train, n_val,
                 ", ".join("%s=%s" % item for item in sorted(chosen.items())))
    return settings


def check_calibration_split(features: Any, labels: Any, verified: Any, class_names: Sequence[str] | None,
                            seed: int) -> None:
    """Refuses, before training, a validation split (`split_verified`) the relative decision
    cannot be calibrated on: without both verdicts or with a single class
    (cleannet.calibration.check_calibration_set). Nothing is checked for a single class
    overall (its decision is the threshold), nor for inputs the later checks refuse."""
    from cleannet.calibration import check_calibration_set

    n = len(check_features(features))
    class_ids, names = check_labels(labels, n, class_names)
    flags = check_verified(verified, n)
    if len(names) >= 2:
        val = split_verified(flags, seed)[1]
        check_calibration_set(class_ids[val], flags[val], "verified (the fifth kept for calibration, seed %d)" % seed)


def check_recipe(recipe: str, num_classes: int, pool_class_ids: np.ndarray) -> None:
    """Refuses, before anything is written, a recipe the data cannot train or calibrate:
    cross-class negatives need two classes, the "neighbours" class score two samples of
    each class in the bank (pool_class_ids [n]: the classes of the samples outside
    validation, all.npy's)."""
    from cleannet.config import RECIPES
    from cleannet.scoring import check_bank as check_bank_classes

    settings = RECIPES[recipe]
    if (settings.cross_class_weight > 0 or settings.confident_weight > 0) and num_classes < 2:
        raise InputError("%r pairs samples with other classes, but the labels hold %d class; pass recipe='paper'"
                         % (recipe, num_classes), field="recipe")
    if settings.class_score == "neighbours":
        check_bank_classes(pool_class_ids, num_classes, "labels (outside validation)")


def check_bank(bank: Any, img_dim: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The "neighbours" class score's bank (features [N, img_dim], class ids [N] in
    [0, num_classes)) → (float32 [N, img_dim], int32 [N]); InputError otherwise."""
    if not isinstance(bank, (tuple, list)) or len(bank) != 2:
        raise InputError("must be (features [N, D], class ids [N]) or the path of an all.npy", field="bank")
    features = check_features(bank[0])
    if features.shape[1] != img_dim:
        raise InputError("features have %d columns, expected img_dim=%d (the model's)" % (features.shape[1], img_dim),
                         field="bank")
    names = [str(c) for c in range(num_classes)]
    class_ids, _ = check_labels(np.asarray(bank[1]).astype(np.int64), len(features), names)
    return features, class_ids
