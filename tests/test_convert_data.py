"""Tests for util/convert_data.py: TSV -> train/val/all/ref .npy, by function and by CLI."""

import functools
import os

import numpy as np
import pytest

import process_control

from cleannet.tools import convert_data
from noisylabels.errors import InputError

CLASSES = ["apple", "banana", "cherry", "date"]


def fmt(row):
    return ",".join("%.9g" % v for v in row)  # round-trips float32 exactly


@pytest.fixture
def class_list(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return str(path)


def write(tmp_path, name, lines, newline="\n"):
    path = tmp_path / name
    path.write_bytes((newline.join(lines) + newline).encode())
    return str(path)


run_cli = functools.partial(process_control.run_cli, "util/convert_data.py")


def verified_data(seed, n, h):
    rng = np.random.default_rng(seed)
    features = (rng.standard_normal((n, h)) * 10).astype(np.float32)
    class_ids = rng.integers(0, len(CLASSES), n)
    vlabels = rng.choice([1, 0, -1], n, p=[0.5, 0.3, 0.2])
    return features, class_ids, vlabels


def verified_lines(features, class_ids, vlabels):
    """Alternates the 4- and 5-column layouts; keys hold commas."""
    lines = []
    for i, (row, c, v) in enumerate(zip(features, class_ids, vlabels)):
        if i % 2:
            lines.append("key,%d\thttp://x/%d.jpg\t%s\t%d\t%s" % (i, i, CLASSES[c], v, fmt(row)))
        else:
            lines.append("key,%d\t%s\t%d\t%s" % (i, CLASSES[c], v, fmt(row)))
    return lines


def expected_verified(features, class_ids, vlabels):
    rows = [list(f) + [c, v] for f, c, v in zip(features, class_ids, vlabels) if v != -1]
    return np.array(rows, dtype=np.float32)


def test_convert_verified_function_counts_and_crlf(tmp_path, class_list):
    features, class_ids, vlabels = verified_data(0, 23, 5)
    tsv = write(tmp_path, "train.tsv", verified_lines(features, class_ids, vlabels), "\r\n")
    result = convert_data.convert("train", class_list, tsv, str(tmp_path / "out"), chunk_rows=4)
    table = np.load(tmp_path / "out" / "train.npy")
    assert table.dtype == np.float32
    np.testing.assert_array_equal(table, expected_verified(features, class_ids, vlabels))
    assert result.rows == len(table) == int(np.sum(vlabels != -1))
    assert result.positives == int(np.sum(vlabels == 1))
    assert result.negatives == int(np.sum(vlabels == 0))
    assert result.invalid == int(np.sum(vlabels == -1)) > 0
    assert result.img_dim == 5
    assert sorted(os.listdir(tmp_path / "out")) == ["train.npy"]  # no temporary left


def test_cli_train_and_val_round_trip(tmp_path, class_list):
    features, class_ids, vlabels = verified_data(1, 9, 6)
    tsv = write(tmp_path, "val.tsv", verified_lines(features, class_ids, vlabels) + [""])
    out = str(tmp_path / "out")
    proc = run_cli("--split=val", "--class_list=" + class_list, "--data_path=" + tsv,
                   "--output_dir=" + out, "--img_dim=6", "--chunk_rows=2", module=True)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(os.path.join(out, "val.npy")),
                                  expected_verified(features, class_ids, vlabels))
    assert "%d positives" % np.sum(vlabels == 1) in proc.stderr
    assert "%d invalid" % np.sum(vlabels == -1) in proc.stderr


def all_lines(features, class_ids):
    return ["k%d\t%s%s\t%s" % (i, "u%d\t" % i if i % 3 == 0 else "", CLASSES[c], fmt(row))
            for i, (row, c) in enumerate(zip(features, class_ids))]


def test_cli_all_is_grouped_by_class_in_stable_order(tmp_path, class_list):
    rng = np.random.default_rng(2)
    features = rng.standard_normal((17, 3)).astype(np.float32)
    class_ids = rng.integers(0, 3, 17)  # class 3 ("date") has no samples
    tsv = write(tmp_path, "all.tsv", all_lines(features, class_ids))
    out = str(tmp_path / "out")
    proc = run_cli("--split=all", "--class_list=" + class_list, "--data_path=" + tsv,
                   "--output_dir=" + out, "--chunk_rows=5")
    assert proc.returncode == 0, proc.stderr
    order = sorted(range(17), key=lambda i: class_ids[i])  # Python's sort is stable
    expected = np.array([list(features[i]) + [class_ids[i]] for i in order], np.float32)
    np.testing.assert_array_equal(np.load(os.path.join(out, "all.npy")), expected)
    assert os.listdir(out) == ["all.npy"]


def test_all_already_grouped_input(tmp_path, class_list):
    features = np.arange(12, dtype=np.float32).reshape(6, 2)
    class_ids = np.array([0, 0, 1, 3, 3, 3])
    tsv = write(tmp_path, "all.tsv", all_lines(features, class_ids))
    result = convert_data.convert("all", class_list, tsv, str(tmp_path), chunk_rows=4)
    np.testing.assert_array_equal(np.load(tmp_path / "all.npy"),
                                  np.column_stack([features, class_ids]).astype(np.float32))
    assert result.rows == 6 and result.img_dim == 2


def test_cli_ref_round_trip(tmp_path, class_list):
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((4, 3, 2)).astype(np.float32)
    cells = [(c, r) for c in range(4) for r in range(3)]
    rng.shuffle(cells)  # any row order
    lines = ["%s\t%d\t%s" % (CLASSES[c], r, fmt(ref[c, r])) for c, r in cells]
    tsv = write(tmp_path, "ref.tsv", lines, "\r\n")
    proc = run_cli("--split=ref", "--class_list=" + class_list, "--data_path=" + tsv,
                   "--output_dir=" + str(tmp_path), "--num_ref=3")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "ref.npy"), ref)


GOOD_ROW = "k\tapple\t1\t1,2,3"
GOOD_ALL = "k\tapple\t1,2,3"
REF_ROWS = ["%s\t%d\t1,2" % (name, r) for name in CLASSES for r in range(2)]


@pytest.mark.parametrize("split, lines, flags, line, expected", [
    ("train", [GOOD_ROW, "k\tapple\t1\t1,abc,3"], [], 2,
     "feature: value 2 ('abc') is not a number"),
    ("train", [GOOD_ROW], ["--img_dim=4"], 1,
     "feature: 3 values, expected 4 (from --img_dim)"),
    ("val", [GOOD_ROW, "k\tapple\t0\t1,2"], [], 2,
     "feature: 2 values, expected 3 (from line 1)"),
    ("train", [GOOD_ROW, GOOD_ROW, "k\tapple\t1\t1,inf,3"], ["--chunk_rows=2"], 3,
     "feature: nan/inf at value 2"),
    ("train", [GOOD_ROW, "k\t1\t1,2,3"], [], 2, "expected 4 or 5 tab-separated columns, "
                                                "found 3"),
    ("all", [GOOD_ALL, "k\tfoo\t1,2,3"], [], 2, "class_name: unknown class 'foo' (not in "),
    ("train", [GOOD_ROW, "k\tapple\tyes\t1,2,3"], [], 2, "vlabel: expected 1, 0 or -1"),
    ("ref", REF_ROWS + ["date\t1\t3,4"], ["--num_ref=2"], 9,
     "ref_id: duplicate row for class 'date', ref_id 1 (first on line 8)"),
    ("ref", REF_ROWS + ["date\t2\t3,4"], ["--num_ref=2"], 9,
     "ref_id: 2 is out of range [0, 2) (--num_ref=2)"),
    ("ref", REF_ROWS[:-2], ["--num_ref=2"], None,
     "class_name: class 'date' (id 3) has no rows"),
    ("ref", REF_ROWS[:-1], ["--num_ref=2"], None,
     "ref_id: class 'date' has no row with ref_id 1"),
])
def test_cli_bad_rows(tmp_path, class_list, split, lines, flags, line, expected):
    tsv = write(tmp_path, "in.tsv", lines)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("unrelated")
    proc = run_cli("--split=" + split, "--class_list=" + class_list, "--data_path=" + tsv,
                   "--output_dir=" + str(out), *flags)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert errors == [proc.stderr.splitlines()[-1]]
    where = tsv if line is None else "%s:%d" % (tsv, line)
    assert errors[0].startswith("error: %s: %s" % (where, expected)), errors[0]
    assert os.listdir(out) == ["keep.txt"]  # no output, no temporary


FLAG_ERRORS = [
    # id, flags (a bare name leaves that flag out), parts of the one error line
    ("unknown_split", ["--split=test"], ["flag --split=test:", "one of <train|val|all|ref>"]),
    ("no_split", ["--split"], ["flag --split=None:", "must have a value other than None"]),
    ("no_class_list", ["--class_list"], ["flag --class_list=None:", "must have a value other than None"]),
    ("no_data_path", ["--data_path"], ["flag --data_path=None:", "must have a value other than None"]),
    ("no_output_dir", ["--output_dir"], ["flag --output_dir=None:", "must have a value other than None"]),
    ("img_dim_0", ["--img_dim=0"], ["flag --img_dim=0:", "must be positive or -1"]),
    ("img_dim_-2", ["--img_dim=-2"], ["flag --img_dim=-2:", "-2 is not integer >= -1"]),
    ("num_ref_0", ["--num_ref=0"], ["flag --num_ref=0:", "0 is not a positive integer"]),
    ("chunk_rows_0", ["--chunk_rows=0"], ["flag --chunk_rows=0:", "0 is not a positive integer"]),
    ("missing_data_path", ["--data_path=/nonexistent.tsv"], ["/nonexistent.tsv: file not found"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in FLAG_ERRORS], ids=[case[0] for case in FLAG_ERRORS])
def test_cli_bad_flags(tmp_path, class_list, args, expected):
    """A bad flag is one stderr line naming the flag and its value, exit status 2, no output."""
    given = {"--split": "--split=train", "--class_list": "--class_list=" + class_list,
             "--data_path": "--data_path=" + class_list, "--output_dir": "--output_dir=" + str(tmp_path / "out")}
    for arg in args:
        given.pop(arg.split("=")[0], None)
    proc = run_cli(*(list(given.values()) + [arg for arg in args if "=" in arg]))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and all(part in lines[-1] for part in expected), proc.stderr
    assert not os.path.exists(tmp_path / "out" / "train.npy")


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n"])
def test_empty_tsv_keeps_existing_output(tmp_path, class_list, text):
    (tmp_path / "in.tsv").write_text(text)
    previous = np.ones((2, 5), np.float32)
    np.save(tmp_path / "train.npy", previous)
    with pytest.raises(InputError, match="no rows"):
        convert_data.convert("train", class_list, str(tmp_path / "in.tsv"), str(tmp_path))
    np.testing.assert_array_equal(np.load(tmp_path / "train.npy"), previous)
    assert sorted(os.listdir(tmp_path)) == ["classes.txt", "in.tsv", "train.npy"]


def test_duplicate_class_list_entry(tmp_path):
    (tmp_path / "classes.txt").write_text("apple\nbanana\napple\n")
    (tmp_path / "in.tsv").write_text(GOOD_ROW + "\n")
    with pytest.raises(InputError) as info:
        convert_data.convert("train", str(tmp_path / "classes.txt"), str(tmp_path / "in.tsv"),
                             str(tmp_path / "out"))
    assert str(info.value).startswith(str(tmp_path / "classes.txt") + ":3: class_name: "
                                      "duplicate class name 'apple'")
    assert not os.path.exists(tmp_path / "out" / "train.npy")
