"""Tests for util/heldout_train_data.py: dropping the rows of held-out classes."""

import os
import subprocess
import sys

import pytest

from cleannet.tools import heldout_train_data
from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "util", "heldout_train_data.py")

ROWS = [
    b"k1\tapple\t1\t1,2\n",
    b"k2\thttp://x/2.jpg\tbanana\t0\t3,4\r\n",  # CRLF kept as is
    b"k3,with,commas\tcherry\t-1\t5,6\n",
    b"k4\thttp://x/4.jpg\tapple\t0\t7,8\r\n",
    b"k5\tbanana\t1\t9,10",  # no final newline
]
KEEP = b"apple\t1\r\nbanana\t0\ncherry\t1\n\n"


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_drops_exactly_the_keep0_rows(tmp_path):
    keep = write(tmp_path, "keep.tsv", KEEP)
    source = write(tmp_path, "train.tsv", b"".join(ROWS))
    result = heldout_train_data.filter_heldout(keep, source, str(tmp_path / "out.tsv"))
    expected = ROWS[0] + ROWS[2] + ROWS[3]
    assert (tmp_path / "out.tsv").read_bytes() == expected
    assert (result.kept, result.dropped) == (3, 2)
    assert result.dropped_per_class == {"banana": 2}


def test_cli(tmp_path):
    keep = write(tmp_path, "keep.tsv", b"apple\t0\nbanana\t1\ncherry\t1\n")
    source = write(tmp_path, "train.tsv", b"".join(ROWS))
    out = str(tmp_path / "out.tsv")
    proc = subprocess.run([sys.executable, SCRIPT, "--heldout_class_list=" + keep,
                           "--input_file=" + source, "--output_file=" + out],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        assert f.read() == ROWS[1] + ROWS[2] + ROWS[4]


def test_cli_error_leaves_no_output(tmp_path):
    keep = write(tmp_path, "keep.tsv", b"apple\t1\n")
    source = write(tmp_path, "train.tsv", b"".join(ROWS))
    out = str(tmp_path / "out.tsv")
    proc = subprocess.run([sys.executable, SCRIPT, "--heldout_class_list=" + keep,
                           "--input_file=" + source, "--output_file=" + out],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "error: %s:2: class_name: class 'banana' is not in %s" % (source, keep))
    assert sorted(os.listdir(tmp_path)) == ["keep.tsv", "train.tsv"]


@pytest.mark.parametrize("keep_text, rows, expected", [
    (b"apple\tyes\n", ROWS[:1], "keep.tsv:1: keep: expected 0 or 1, found 'yes'"),
    (b"apple\t1\napple\t0\n", ROWS[:1], "keep.tsv:2: class_name: duplicate class 'apple'"),
    (b"apple\n", ROWS[:1], "keep.tsv:1: expected 2 tab-separated columns"),
    (b"", ROWS[:1], "keep.tsv: empty class list"),
    (KEEP, [ROWS[0], b"k\tapple\t1,2\n"], "train.tsv:2: expected 4 or 5 tab-separated "
                                           "columns, found 3"),
    (KEEP, [b"\n"], "train.tsv: no rows"),
])
def test_errors(tmp_path, keep_text, rows, expected):
    keep = write(tmp_path, "keep.tsv", keep_text)
    source = write(tmp_path, "train.tsv", b"".join(rows))
    with pytest.raises(InputError) as info:
        heldout_train_data.filter_heldout(keep, source, str(tmp_path / "out.tsv"))
    assert str(info.value).startswith(str(tmp_path / expected))
    assert not os.path.exists(tmp_path / "out.tsv")
