"""Synthetic label noise, the confusion matrix C and noise types (docs/originals.md#noisy-label-model-matrix-c-noise-types-synthetic-noise).

Conventions: L classes, labels are integers in [0, L). Every matrix is indexed
[noisy label ỹ, clean label y], so column y is the distribution of ỹ given y.

- `generate_matrix_q`: a random column-stochastic Q with diagonal 1 − level.
- `corrupt`: replaces each label y by a draw from column y of Q.
- `compute_matrix_c`: estimates C (the "confusing noise" distribution) from pairs of
  clean and noisy labels.
- `get_noise_types`: 0 (noise-free), 1 (random) or 2 (confusing) for each pair.

`read_labels` and `read_matrix` read the command line's (noise_model/tools/noise.py) label
files (text, one integer per line, or 1-D `.npy`) and matrices (`.npy`).
"""

import os

import numpy as np
from numpy.typing import ArrayLike

from noisylabels.errors import InputError
from noisylabels.fileio import iter_text_lines, load_npy
from noisylabels.strict_numbers import parse_int

NOISE_FREE, RANDOM_NOISE, CONFUSING_NOISE = 0, 1, 2
# Relative tolerance under which two objectives of compute_matrix_c count as tied.
TIE_TOLERANCE = 1e-12


def _check_num_classes(num_classes: int) -> int:
    if int(num_classes) != num_classes or num_classes < 2:
        raise InputError("must be an integer ≥ 2, got %r" % (num_classes,), field="num_classes")
    return int(num_classes)


def _check_labels(labels: ArrayLike, num_classes: int, field: str) -> np.ndarray:
    """Returns `labels` as int64 [N]; InputError unless 1-D integers in [0, num_classes)."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InputError("expected a 1-D array of labels, got shape %s" % (array.shape,),
                         field=field)
    if array.size == 0:
        return array.astype(np.int64)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == bool):
        raise InputError("labels must be integers, got dtype %s" % array.dtype, field=field)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError("labels must be integers", field=field)
    array = array.astype(np.int64)
    bad = np.flatnonzero((array < 0) | (array >= num_classes))
    if bad.size:
        raise InputError("label %d at index %d out of range 0..%d"
                         % (array[bad[0]], bad[0], num_classes - 1), field=field)
    return array


def _check_matrix(matrix: ArrayLike, field: str, column_stochastic: bool = False) -> np.ndarray:
    """Returns `matrix` as float64 [L, L]; InputError unless square, finite, non-negative."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise InputError("has shape %s, expected L×L" % (array.shape,), field=field)
    _check_num_classes(array.shape[0])
    if not np.all(np.isfinite(array)):
        raise InputError("has non-finite entries", field=field)
    if np.any(array < 0):
        raise InputError("has negative entries", field=field)
    if column_stochastic:
        sums = array.sum(axis=0)
        bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
        if bad.size:
            raise InputError("column %d sums to %.8g, expected 1 (Q[ỹ, y] = p(ỹ | y))"
                             % (bad[0], sums[bad[0]]), field=field)
    return array


def generate_matrix_q(level: float, num_classes: int, seed: int) -> np.ndarray:
    """A random noise matrix for synthetic label noise.

    Args:
      level: noise level in [0, 1]: the probability that a label is changed.
      num_classes: L ≥ 2.
      seed: seed of `np.random.default_rng`.

    Returns:
      float64 [L, L], Q[ỹ, y] = p(ỹ | y): diagonal 1 − level; the off-diagonal mass
      `level` of each column is spread proportionally to uniform random draws, so every
      column sums to 1.
    """
    num_classes = _check_num_classes(num_classes)
    level = float(level)
    if not 0.0 <= level <= 1.0:
        raise InputError("must be in [0, 1], got %g" % level, field="level")
    rng = np.random.default_rng(seed)
    draws = rng.uniform(size=(num_classes, num_classes))
    np.fill_diagonal(draws, 0.0)
    sums = draws.sum(axis=0, keepdims=True)
    draws = np.where(sums > 0, draws / np.where(sums > 0, sums, 1.0), 1.0 / (num_classes - 1))
    np.fill_diagonal(draws, 0.0)
    matrix_q = level * draws
    np.fill_diagonal(matrix_q, 1.0 - level)
    return matrix_q


def corrupt(labels: ArrayLike, matrix_q: ArrayLike, seed: int) -> np.ndarray:
    """Draws a noisy label for each clean label.

    Args:
      labels: int [N] clean labels in [0, L).
      matrix_q: [L, L] column-stochastic, Q[ỹ, y] = p(ỹ | y).
      seed: seed of `np.random.default_rng`.

    Returns:
      int64 [N]: label i replaced by a draw from column labels[i] of Q (one uniform draw
      per label, in order, inverted through the column's cumulative sum).
    """
    matrix_q = _check_matrix(matrix_q, "matrix_q", column_stochastic=True)
    num_classes = matrix_q.shape[0]
    labels = _check_labels(labels, num_classes, "labels")
    rng = np.random.default_rng(seed)
    uniforms = rng.random(labels.shape[0])
    cumulative = np.cumsum(matrix_q, axis=0)
    cumulative /= cumulative[-1:, :]  # exact 1 at the end despite round-off
    noisy = np.empty_like(labels)
    for clean in range(num_classes):
        rows = labels == clean
        drawn = np.searchsorted(cumulative[:, clean], uniforms[rows], side="right")
        noisy[rows] = np.minimum(drawn, num_classes - 1)
    return noisy


def _best_kept_count(sorted_values: np.ndarray, num_classes: int) -> int:
    """The k of docs/originals.md#noisy-label-model-matrix-c-noise-types-synthetic-noise for one column's off-diagonal entries sorted descending.

    Maximises Σ_{i<k} f_i log(f_i / Σ_{i<k} f_i) + Σ_{i≥k} f_i log(1/(L−1)) over
    k = 1..L−1, ties (within a relative 1e-12, for round-off) to the larger k, stopping
    after the last non-zero entry (a zero entry adds nothing to the kept sum, and
    0·log 0 would be undefined).
    """
    log_uniform = np.log(1.0 / (num_classes - 1))
    best_k, best_objective = 1, -np.inf
    for k in range(1, len(sorted_values) + 1):
        kept = sorted_values[:k]
        kept_sum = kept.sum()
        if kept_sum > 0:
            nonzero = kept[kept > 0]
            kept_term = np.sum(nonzero * np.log(nonzero / kept_sum))
        else:
            kept_term = 0.0
        objective = kept_term + np.sum(sorted_values[k:]) * log_uniform
        # Ties (up to round-off) go to the larger k.
        if objective >= best_objective - TIE_TOLERANCE * abs(best_objective):
            best_k, best_objective = k, objective
        if k < len(sorted_values) and sorted_values[k] == 0:
            break
    return best_k


def compute_matrix_c(clean_labels: ArrayLike, noisy_labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Estimates C from (clean, noisy) label pairs (docs/originals.md#noisy-label-model-matrix-c-noise-types-synthetic-noise).

    Confusion counts [y, ỹ] with the diagonal removed, each true-class row normalised,
    transposed so column y is the distribution of ỹ given y. In each column the top k
    off-diagonal entries are kept (k from `_best_kept_count`; equal entries are ordered
    by class index) and the rest zeroed, then each column is normalised to sum 1.
    A class with no off-diagonal pair (no mislabelled sample) gets an all-zero column:
    it has no confusing noise.

    Args:
      clean_labels: int [N] in [0, L).
      noisy_labels: int [N] in [0, L).
      num_classes: L ≥ 2.

    Returns:
      float64 [L, L], C[ỹ, y], zero diagonal.
    """
    num_classes = _check_num_classes(num_classes)
    clean = _check_labels(clean_labels, num_classes, "clean_labels")
    noisy = _check_labels(noisy_labels, num_classes, "noisy_labels")
    if clean.shape != noisy.shape:
        raise InputError("%d clean labels but %d noisy labels" % (clean.size, noisy.size),
                         field="noisy_labels")
    counts = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    np.fill_diagonal(counts, 0.0)
    row_sums = counts.sum(axis=1, keepdims=True)
    frequencies = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    frequencies = frequencies.T  # [ỹ, y]

    matrix_c = np.zeros_like(frequencies)
    for column in range(num_classes):
        off_diagonal = np.array([i for i in range(num_classes) if i != column])
        values = frequencies[off_diagonal, column]
        order = np.argsort(-values, kind="stable")
        k = _best_kept_count(values[order], num_classes)
        kept = off_diagonal[order[:k]]
        matrix_c[kept, column] = frequencies[kept, column]
    column_sums = matrix_c.sum(axis=0, keepdims=True)
    return np.divide(matrix_c, column_sums, out=np.zeros_like(matrix_c), where=column_sums > 0)


def get_noise_types(clean_labels: ArrayLike, noisy_labels: ArrayLike, matrix_c: ArrayLike) -> np.ndarray:
    """The noise type of each pair: 0 if ỹ = y; 1 if C[ỹ, y] ≤ 1/(L−1); else 2.

    Args:
      clean_labels: int [N] in [0, L).
      noisy_labels: int [N] in [0, L).
      matrix_c: [L, L], C[ỹ, y].

    Returns:
      int64 [N] in {0, 1, 2}.
    """
    matrix_c = _check_matrix(matrix_c, "matrix_c")
    num_classes = matrix_c.shape[0]
    clean = _check_labels(clean_labels, num_classes, "clean_labels")
    noisy = _check_labels(noisy_labels, num_classes, "noisy_labels")
    if clean.shape != noisy.shape:
        raise InputError("%d clean labels but %d noisy labels" % (clean.size, noisy.size),
                         field="noisy_labels")
    confusing = matrix_c[noisy, clean] > 1.0 / (num_classes - 1)
    types = np.where(confusing, CONFUSING_NOISE, RANDOM_NOISE).astype(np.int64)
    types[clean == noisy] = NOISE_FREE
    return types


# ---------------------------------------------------------------------------------------
# Label and matrix files.


def read_labels(path: str, field: str) -> np.ndarray:
    """Reads labels: a 1-D integer `.npy`, or text with one integer per line.

    Blank lines are skipped. Returns int64 [N]; InputError naming the file and line.
    """
    if path.endswith(".npy"):
        array = load_npy(path, field=field, ndim=1)
        if not (np.issubdtype(array.dtype, np.integer)
                or (np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array))
                    and np.all(array == np.round(array)) and np.all(np.abs(array) < 2.0 ** 63))):
            raise InputError("expected integer labels, got dtype %s" % array.dtype,
                             path=path, field=field)
        return array.astype(np.int64)
    if not os.path.exists(path):
        raise InputError("file not found", path=path, field=field)
    labels = []
    for line_number, text in iter_text_lines(path, field=field):
        if text.strip():
            labels.append(parse_int(text, path, line_number, field))
    return np.asarray(labels, dtype=np.int64)


def read_matrix(path: str, field: str) -> np.ndarray:
    """Reads an L×L matrix from a `.npy` file (InputError if missing or malformed)."""
    return load_npy(path, field=field, ndim=2).astype(np.float64)
