"""Synthetic noise, C estimation and noise types (docs/originals.md#noisy-label-model-matrix-c-noise-types-synthetic-noise), with hand-computed answers."""

import functools

import numpy as np
import pytest

import process_control

from noise_model.data import noise
from noisylabels.errors import InputError


def pairs_from_counts(counts):
    """(clean, noisy) label arrays with counts[y][ỹ] pairs of each kind."""
    clean, noisy = [], []
    for y, row in enumerate(counts):
        for y_noisy, count in enumerate(row):
            clean += [y] * count
            noisy += [y_noisy] * count
    return np.array(clean), np.array(noisy)


@pytest.mark.parametrize("level", [0.0, 0.3, 1.0])
def test_matrix_q_is_column_stochastic_with_the_given_diagonal(level):
    matrix_q = noise.generate_matrix_q(level, 6, seed=3)
    assert matrix_q.shape == (6, 6) and matrix_q.dtype == np.float64
    np.testing.assert_allclose(np.diag(matrix_q), 1.0 - level)
    np.testing.assert_allclose(matrix_q.sum(axis=0), 1.0, atol=1e-12)
    assert np.all(matrix_q >= 0)
    if 0 < level:
        off_diagonal = matrix_q[~np.eye(6, dtype=bool)]
        assert len(np.unique(off_diagonal)) == 30  # spread at random, not uniformly
    np.testing.assert_array_equal(matrix_q, noise.generate_matrix_q(level, 6, seed=3))
    if level > 0:
        assert not np.array_equal(matrix_q, noise.generate_matrix_q(level, 6, seed=4))


def test_corruption_frequencies_follow_q():
    num_classes, per_class = 4, 5000
    matrix_q = noise.generate_matrix_q(0.5, num_classes, seed=0)
    labels = np.repeat(np.arange(num_classes), per_class)
    noisy = noise.corrupt(labels, matrix_q, seed=1)
    assert noisy.dtype == np.int64 and noisy.shape == labels.shape
    for y in range(num_classes):
        observed = np.bincount(noisy[labels == y], minlength=num_classes)
        expected = per_class * matrix_q[:, y]
        chi_square = np.sum((observed - expected) ** 2 / expected)
        # 3 degrees of freedom: P(chi2 > 30) is below 2e-6 for a correct sampler.
        assert chi_square < 30.0, (y, observed, expected)
    np.testing.assert_array_equal(noisy, noise.corrupt(labels, matrix_q, seed=1))
    np.testing.assert_array_equal(noise.corrupt(labels, np.eye(num_classes), seed=5), labels)


def test_corrupt_rejects_bad_input():
    matrix_q = noise.generate_matrix_q(0.2, 3, seed=0)
    with pytest.raises(InputError, match="out of range"):
        noise.corrupt(np.array([0, 3]), matrix_q, seed=0)
    with pytest.raises(InputError, match="sums to"):
        noise.corrupt(np.array([0, 1]), matrix_q * 2, seed=0)
    with pytest.raises(InputError):
        noise.corrupt(np.array([0, 1]), np.ones((3, 2)) / 3, seed=0)
    with pytest.raises(InputError):
        noise.generate_matrix_q(1.5, 3, seed=0)
    with pytest.raises(InputError):
        noise.generate_matrix_q(0.5, 1, seed=0)


def test_matrix_c_keeps_the_top_entries_chosen_by_the_objective():
    # L = 4, log(1/(L-1)) = -1.0986.
    # class 0: off-diagonal f = (ỹ1 .6, ỹ2 .3, ỹ3 .1): objective k=1 -0.439, k=2 -0.683,
    #          k=3 -0.898 → keep ỹ1 only.
    # class 1: never mislabelled → all-zero column.
    # class 2: only ỹ3 → one entry (early stop at the first zero, no 0·log 0).
    # class 3: f = (ỹ2 .5, ỹ0 .25, ỹ1 .25): k=1 -0.549, k=2 -0.752, k=3 -1.040 → ỹ2.
    counts = [[5, 6, 3, 1],
              [0, 7, 0, 0],
              [0, 0, 4, 2],
              [1, 1, 2, 9]]
    clean, noisy = pairs_from_counts(counts)
    want = np.array([[0, 0, 0, 0],
                     [1, 0, 0, 0],
                     [0, 0, 0, 1],
                     [0, 0, 1, 0]], np.float64)
    got = noise.compute_matrix_c(clean, noisy, 4)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


def test_matrix_c_keeps_two_entries_when_both_beat_uniform():
    # L = 10, log(1/9) = -2.197.
    # class 0: f = (.5, .5): k=1 0.5·log(1/9) = -1.099 < k=2 log(.5) = -0.693 → both kept.
    # class 1: f = (.75, .25): k=1 .25·log(1/9) = -0.549 > k=2 -0.562 → one kept.
    counts = np.zeros((10, 10), np.int64)
    counts[0, 1] = counts[0, 2] = 2
    counts[1, 3], counts[1, 4] = 3, 1
    got = noise.compute_matrix_c(*pairs_from_counts(counts), num_classes=10)
    want = np.zeros((10, 10))
    want[1, 0] = want[2, 0] = 0.5
    want[3, 1] = 1.0
    np.testing.assert_allclose(got, want)


def test_matrix_c_ties_go_to_the_larger_k():
    # L = 5, log(1/4) = 2·log(1/2).
    # class 0: f = (ỹ3 .5, ỹ4 .5): k=1 .5·log(1/4) = log(1/2) = k=2 2·.5·log(.5): tie → k=2.
    # class 1: f = (.25, .25, .25, .25) over ỹ0, ỹ2, ỹ3, ỹ4: k=1 .75·log(1/4) = -1.0397 =
    #          k=2 .5·log(.5) + .5·log(1/4); k=3 -1.171; k=4 -1.386 → k=2, and among
    #          equal entries the lower class indices (ỹ0, ỹ2) come first.
    counts = np.zeros((5, 5), np.int64)
    counts[0, 3] = counts[0, 4] = 1
    counts[1, [0, 2, 3, 4]] = 1
    got = noise.compute_matrix_c(*pairs_from_counts(counts), num_classes=5)
    want = np.zeros((5, 5))
    want[3, 0] = want[4, 0] = 0.5
    want[0, 1] = want[2, 1] = 0.5
    np.testing.assert_allclose(got, want)


def test_matrix_c_rejects_bad_input():
    with pytest.raises(InputError, match="out of range"):
        noise.compute_matrix_c(np.array([0, 4]), np.array([1, 1]), 4)
    with pytest.raises(InputError, match="noisy labels"):
        noise.compute_matrix_c(np.array([0, 1]), np.array([1]), 4)


def test_noise_types():
    # L = 4: threshold 1/3. C[1,0] = 1/3 exactly is still "random" (≤).
    matrix_c = np.array([[0.0, 0.2, 0.0, 0.0],
                         [1 / 3, 0.0, 0.0, 0.0],
                         [1 / 3, 0.8, 0.0, 1.0],
                         [1 / 3, 0.0, 1.0, 0.0]])
    clean = np.array([0, 0, 1, 1, 2, 3, 3, 2])
    noisy = np.array([0, 1, 2, 0, 3, 2, 0, 2])
    got = noise.get_noise_types(clean, noisy, matrix_c)
    np.testing.assert_array_equal(got, [0, 1, 2, 1, 2, 2, 1, 0])
    assert got.dtype == np.int64
    with pytest.raises(InputError):
        noise.get_noise_types(clean, noisy[:-1], matrix_c)
    with pytest.raises(InputError):
        noise.get_noise_types(clean, noisy + 1, matrix_c)


run_cli = functools.partial(process_control.run_cli, "noise_model/noise.py")


def read_text_matrix(path):
    with open(path) as f:
        return np.array([[float(v) for v in line.split(" ")] for line in f.read().splitlines()])


def test_cli_writes_npy_and_text(tmp_path):
    stem = str(tmp_path / "q")
    result = run_cli("--action=make_q", "--level=0.4", "--num_classes=3", "--seed=2",
                      "--output=" + stem)
    assert result.returncode == 0, result.stderr
    matrix_q = np.load(stem + ".npy")
    np.testing.assert_array_equal(matrix_q, noise.generate_matrix_q(0.4, 3, 2))
    np.testing.assert_allclose(read_text_matrix(stem + ".txt"), matrix_q, rtol=1e-7)

    clean = np.array([0, 1, 2, 2, 1, 0, 1])
    (tmp_path / "clean.txt").write_text("".join("%d\n" % v for v in clean))
    result = run_cli("--action=corrupt", "--labels=%s" % (tmp_path / "clean.txt"),
                      "--matrix_q=%s.npy" % stem, "--seed=7",
                      "--output=%s" % (tmp_path / "noisy"), module=True)
    assert result.returncode == 0, result.stderr
    noisy = np.load(tmp_path / "noisy.npy")
    np.testing.assert_array_equal(noisy, noise.corrupt(clean, matrix_q, 7))
    assert (tmp_path / "noisy.txt").read_text() == "".join("%d\n" % v for v in noisy)

    result = run_cli("--action=estimate_c", "--clean_labels=%s" % (tmp_path / "clean.txt"),
                      "--noisy_labels=%s" % (tmp_path / "noisy.npy"), "--num_classes=3",
                      "--output=%s" % (tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"),
                                  noise.compute_matrix_c(clean, noisy, 3))

    result = run_cli("--action=noise_types", "--clean_labels=%s" % (tmp_path / "clean.txt"),
                      "--noisy_labels=%s" % (tmp_path / "noisy.txt"),
                      "--matrix_c=%s" % (tmp_path / "c.npy"), "--output=%s" % (tmp_path / "t"))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), noise.get_noise_types(
        clean, noisy, np.load(tmp_path / "c.npy")))


MAKE_Q = ["--action=make_q", "--level=0.5", "--num_classes=3"]
BAD_INPUT = [
    ("level_above_1", ["--action=make_q", "--level=1.5", "--num_classes=3"],
     ["--level=1.5", "not a number in the range [0.0, 1.0]"]),
    ("level_nan", ["--action=make_q", "--level=nan", "--num_classes=3"], ["--level=nan", "must be a finite number"]),
    ("level_not_a_number", ["--action=make_q", "--level=x", "--num_classes=3"], ["--level=x"]),
    ("num_classes_1", ["--action=make_q", "--level=0.5", "--num_classes=1"], ["--num_classes=1", "not integer >= 2"]),
    ("seed_negative", MAKE_Q + ["--seed=-1"], ["--seed=-1", "not a non-negative integer"]),
    ("no_action", ["--level=0.5"], ["--action=None", "must have a value other than None"]),
    ("action_unknown", ["--action=bogus"], ["--action=bogus", "value should be one of"]),
    ("no_output", MAKE_Q + ["--output"], ["--output=None", "must have a value other than None"]),
    ("output_blank", MAKE_Q + ["--output= "], ["--output= : must not be empty"]),
    ("make_q_without_num_classes", ["--action=make_q", "--level=0.5"],
     ["num_classes=None", "--action=make_q needs --level and --num_classes"]),
    ("corrupt_without_matrix_q", ["--action=corrupt", "--labels={labels}"],
     ["matrix_q=None", "--action=corrupt needs --labels and --matrix_q"]),
    ("estimate_c_without_num_classes", ["--action=estimate_c", "--clean_labels={labels}", "--noisy_labels={labels}"],
     ["num_classes=None", "--action=estimate_c needs --clean_labels and --noisy_labels and --num_classes"]),
    ("noise_types_without_matrix_c", ["--action=noise_types", "--clean_labels={labels}", "--noisy_labels={labels}"],
     ["matrix_c=None", "--action=noise_types needs --clean_labels and --noisy_labels and --matrix_c"]),
    ("label_not_an_integer", ["--action=corrupt", "--labels={labels}", "--matrix_q={q}"], ["labels.txt:3"]),
]


@pytest.mark.parametrize("args,expected", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_cli_rejects_bad_input_with_one_line(tmp_path, args, expected):
    """One stderr line naming the flag (and its value), exit status 2, nothing written.
    `--output` is added unless `args` names it; a bare `--output` leaves it out."""
    (tmp_path / "labels.txt").write_text("0\n1\nseven\n")
    np.save(tmp_path / "q.npy", np.eye(3))
    output = [] if any(a.startswith("--output") for a in args) else ["--output=%s" % (tmp_path / "out")]
    args = [a.format(labels=tmp_path / "labels.txt", q=tmp_path / "q.npy") for a in args if a != "--output"]
    result = run_cli(*args, *output)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(part in lines[0] for part in expected), lines[0]
    assert not list(tmp_path.glob("out*"))
