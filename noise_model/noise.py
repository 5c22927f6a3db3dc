"""Synthetic label noise, the confusion matrix C and noise types (docs/originals.md#noisy-label-model-matrix-c-noise-types-synthetic-noise).

Conventions: L classes, labels are integers in [0, L). Every matrix is indexed
[noisy label ỹ, clean label y], so column y is the distribution of ỹ given y.

- `generate_matrix_q`: a random column-stochastic Q with diagonal 1 − level.
- `corrupt`: replaces each label y by a draw from column y of Q.
- `compute_matrix_c`: estimates C (the "confusing noise" distribution) from pairs of
  clean and noisy labels.
- `get_noise_types`: 0 (noise-free), 1 (random) or 2 (confusing) for each pair.

Command line (writes STEM.npy and STEM.txt, both atomically):

  python -m noise_model.noise --action=make_q --level=0.5 --num_classes=10 --seed=0 --output=q
  python -m noise_model.noise --action=corrupt --labels=clean.txt --matrix_q=q.npy \\
      --seed=1 --output=noisy
  python -m noise_model.noise --action=estimate_c --clean_labels=clean.txt \\
      --noisy_labels=noisy.txt --num_classes=10 --output=c
  python -m noise_model.noise --action=noise_types --clean_labels=clean.txt \\
      --noisy_labels=noisy.txt --matrix_c=c.npy --output=types

Label files are text (one integer per line) or 1-D `.npy`. Text matrices have one row
per line, entries separated by spaces, written with `%.8g`.
"""

import os
import sys
from collections.abc import Callable, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from absl import flags
from numpy.typing import ArrayLike

from noisylabels.errors import InputError
from noisylabels.flagutil import define_finite_float, run_tool
from noisylabels.fileio import atomic_open, iter_text_lines, load_npy, refuse_output_equal_to_inputs, save_npy
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
# Command line.

# The flags each --action needs.
ACTION_NEEDS = {
    "make_q": ("level", "num_classes"),
    "corrupt": ("labels", "matrix_q"),
    "estimate_c": ("clean_labels", "noisy_labels", "num_classes"),
    "noise_types": ("clean_labels", "noisy_labels", "matrix_c"),
}
ACTIONS = tuple(ACTION_NEEDS)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a script, so importers get no flags)."""
    flags.DEFINE_enum("action", None, ACTIONS, "What to compute.", required=True)
    define_finite_float("level", None, "make_q: noise level in [0, 1].", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("num_classes", None, "make_q, estimate_c: number of classes L.", lower_bound=2)
    flags.DEFINE_integer("seed", 0, "make_q, corrupt: random seed.", lower_bound=0)
    flags.DEFINE_string("labels", None, "corrupt: clean labels (text, one per line, or .npy).")
    flags.DEFINE_string("clean_labels", None, "estimate_c, noise_types: clean labels.")
    flags.DEFINE_string("noisy_labels", None, "estimate_c, noise_types: noisy labels.")
    flags.DEFINE_string("matrix_q", None, "corrupt: Q as an L×L .npy.")
    flags.DEFINE_string("matrix_c", None, "noise_types: C as an L×L .npy.")
    flags.DEFINE_string("output", None, "Output path stem: writes STEM.npy and STEM.txt "
                        "(a trailing .npy or .txt is dropped).", required=True)
    flags.register_validator("output", lambda value: value is None or value.strip() != "",
                             message="must not be empty")
    for action, needs in ACTION_NEEDS.items():
        flags.register_multi_flags_validator(["action", *needs], _needs_given(action, needs),
                                             message="--action=%s needs %s"
                                             % (action, " and ".join("--" + name for name in needs)))


def _needs_given(action: str, needs: Sequence[str]) -> Callable[[dict], bool]:
    """A multi-flag validator: with --action=`action`, every flag named in `needs` is given."""
    return lambda values: values["action"] != action or all(values[name] is not None for name in needs)


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


def output_stem(output: str) -> str:
    for suffix in (".npy", ".txt"):
        if output.endswith(suffix):
            return output[:-len(suffix)]
    return output


def write_result(stem: str, array: np.ndarray) -> None:
    """Writes `array` to STEM.npy and STEM.txt (rows of `%.8g`, or one integer per line)."""
    save_npy(stem + ".npy", array)
    with atomic_open(stem + ".txt", "w") as f:
        if array.ndim == 1:
            for value in array:
                f.write("%d\n" % value)
        else:
            for row in array:
                f.write(" ".join("%.8g" % value for value in row) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise InputError("unexpected arguments: %s" % " ".join(argv[1:]))
    if FLAGS.action == "make_q":
        result = generate_matrix_q(FLAGS.level, FLAGS.num_classes, FLAGS.seed)
    elif FLAGS.action == "corrupt":
        matrix_q = read_matrix(FLAGS.matrix_q, "matrix_q")
        result = corrupt(read_labels(FLAGS.labels, "labels"), matrix_q, FLAGS.seed)
    elif FLAGS.action == "estimate_c":
        result = compute_matrix_c(read_labels(FLAGS.clean_labels, "clean_labels"),
                                  read_labels(FLAGS.noisy_labels, "noisy_labels"),
                                  FLAGS.num_classes)
    else:  # noise_types
        result = get_noise_types(read_labels(FLAGS.clean_labels, "clean_labels"),
                                 read_labels(FLAGS.noisy_labels, "noisy_labels"),
                                 read_matrix(FLAGS.matrix_c, "matrix_c"))
    stem = output_stem(FLAGS.output)
    inputs = [("--" + name, getattr(FLAGS, name))
              for name in ("labels", "matrix_q", "clean_labels", "noisy_labels", "matrix_c")]
    for path in (stem + ".npy", stem + ".txt"):
        refuse_output_equal_to_inputs({"output": path}, inputs)
    write_result(stem, result)
    print("wrote %s.npy and %s.txt" % (stem, stem))
    return 0


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
