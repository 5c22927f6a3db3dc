"""Command-line details a newcomer meets: --help's usage lines keep their line breaks, a
missing --flagfile and a stray positional argument are one clean line with exit 2,
integers from flags and files are range-checked (int64) like floats are checked finite, and
a failed run leaves no output directory behind."""

import ast
import io
import os
import tokenize

import numpy as np
import pytest

from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open
from noisylabels.strict_numbers import parse_int
from process_control import ROOT, run_cli


def assert_one_line_error(proc, *parts):
    """Exit 2, no traceback, stderr's last line `error: ...` holding every part."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "ERROR" not in last, last
    for part in parts:
        assert part in last, (part, last)


def python_files():
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".") and d != "__pycache__"]
        yield from (os.path.join(directory, name) for name in files if name.endswith(".py"))


def test_no_string_loses_a_line_break_to_a_backslash():
    """A backslash at a line end inside a (non-raw) triple-quoted string joins the lines: the
    shell continuation of a usage example in a docstring vanished from --help."""
    joined = []
    for path in python_files():
        source = open(path, encoding="utf-8").read()
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.STRING and "\n" in token.string:
                value = ast.literal_eval(token.string)
                if isinstance(value, str) and value.count("\n") != token.string.count("\n"):
                    joined.append("%s:%d" % (os.path.relpath(path, ROOT), token.start[0]))
    assert joined == []


@pytest.mark.parametrize("script", ["train.py", "inference.py"])
def test_help_usage_lines_keep_their_breaks(script):
    proc = run_cli(script, "--help")
    assert proc.returncode == 0
    assert "MODEL/log/ \\\n" in proc.stdout or "CKPT \\\n" in proc.stdout
    assert not any("  --" in line.strip() for line in proc.stdout.splitlines() if line.startswith("    python "))


def test_missing_flagfile_is_one_clean_line(tmp_path):
    missing = tmp_path / "none.flags"
    assert_one_line_error(run_cli("train.py", "--flagfile=%s" % missing),
                          "%s: --flagfile: cannot open (No such file or directory)" % missing)


@pytest.mark.parametrize("script, module, flags", [
    ("train.py", False, ["--data_dir=TMP/data", "--checkpoint_dir=TMP/ckpt", "--log_dir=TMP/log"]),
    ("inference.py", False, ["--data_dir=TMP/data", "--output_file=TMP/out.txt"]),
    ("cleannet/quickstart.py", True, ["--work_dir=TMP/work"]),
    ("noise_model/cifar10.py", True, ["--data_dir=TMP/data", "--output_dir=TMP/out"]),
    ("util/convert_data.py", False, ["--split=train", "--class_list=TMP/c.txt", "--data_path=TMP/t.tsv",
                                     "--output_dir=TMP/out"])])
def test_a_stray_positional_argument_is_refused(script, module, flags, tmp_path):
    """Refused before anything runs (absl passed it on unread: `train.py data/` trained on ./data/)."""
    proc = run_cli(script, "stray", *[f.replace("TMP", str(tmp_path)) for f in flags], module=module)
    assert_one_line_error(proc, "unexpected argument 'stray'")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", [2 ** 63, 10 ** 30])
def test_an_integer_flag_beyond_int64_is_refused(value):
    proc = run_cli("inference.py", "--batch_size=%d" % value)
    assert_one_line_error(proc, "flag --batch_size=%d: beyond the range of a 64-bit integer" % value)


def test_integer_flags_in_and_out_of_the_int64_range():
    from absl import flags

    from noisylabels.flagutil import integer_out_of_range

    values = flags.FlagValues()
    flags.DEFINE_integer("offset", 0, "", flag_values=values)
    flags.DEFINE_multi_integer("ids", [], "", flag_values=values)
    for argv, expected in ((["--offset=%d" % -2 ** 63], None), (["--offset=%d" % (2 ** 63 - 1)], None),
                           (["--offset=%d" % (-2 ** 63 - 1)], "--offset=%d" % (-2 ** 63 - 1)),
                           (["--ids=1", "--ids=%d" % 2 ** 64], "--ids=%d" % 2 ** 64)):
        values.unparse_flags()
        values(["prog"] + argv)
        problem = integer_out_of_range(values)
        assert (problem is None) if expected is None else (expected in problem), (argv, problem)


def test_integer_fields_are_range_checked_to_int64():
    info = np.iinfo(np.int64)
    assert parse_int(str(info.max)) == info.max and parse_int(str(info.min)) == info.min
    for text in (str(info.max + 1), str(info.min - 1), "9" * 40):
        with pytest.raises(InputError, match="beyond the range of an int64") as caught:
            parse_int(text, "labels.txt", 3, "label")
        assert str(caught.value).startswith("labels.txt:3: label: ")


def test_noise_label_file_with_a_huge_label_is_one_line(tmp_path):
    labels = tmp_path / "clean.txt"
    labels.write_text("0\n1\n%d\n" % 2 ** 64)
    np.save(tmp_path / "q.npy", np.eye(2))
    proc = run_cli("noise_model/noise.py", "--action=corrupt", "--labels=%s" % labels,
                   "--matrix_q=%s" % (tmp_path / "q.npy"), "--output=%s" % (tmp_path / "out" / "noisy"), module=True)
    assert_one_line_error(proc, "%s:3: labels: '%d' is beyond the range of an int64" % (labels, 2 ** 64))
    assert not (tmp_path / "out").exists()


def test_noise_npy_labels_beyond_int64_are_refused(tmp_path):
    np.save(tmp_path / "clean.npy", np.array([0.0, 1.0, 1e30]))
    np.save(tmp_path / "q.npy", np.eye(2))
    proc = run_cli("noise_model/noise.py", "--action=corrupt", "--labels=%s" % (tmp_path / "clean.npy"),
                   "--matrix_q=%s" % (tmp_path / "q.npy"), "--output=%s" % (tmp_path / "noisy"), module=True)
    assert_one_line_error(proc, "expected integer labels")


def test_convert_data_with_a_missing_data_path_leaves_no_output_directory(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    out = tmp_path / "data" / "npy"
    proc = run_cli("util/convert_data.py", "--split=train", "--class_list=%s" % (tmp_path / "classes.txt"),
                   "--data_path=%s" % (tmp_path / "missing.tsv"), "--output_dir=%s" % out)
    assert_one_line_error(proc, str(tmp_path / "missing.tsv"), "file not found")
    assert sorted(os.listdir(tmp_path)) == ["classes.txt"]


def test_a_failed_atomic_write_removes_the_directories_it_made(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "kept" / "a" / "b" / "out.txt") as f:
            f.write("half")
            raise RuntimeError("failed midway")
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == []
    with atomic_open(tmp_path / "kept" / "a" / "out.txt") as f:
        f.write("done")
    assert (tmp_path / "kept" / "a" / "out.txt").read_text() == "done"
