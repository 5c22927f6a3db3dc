"""cleannet/tsv_reader.py parses a chunk's features in one call (cleannet/feature_text.py,
pandas' C reader, no child process): the same values as a plain Python parse, and bad
rows still reported at their own line."""

import os

import numpy as np
import pytest

from cleannet import feature_text, tsv_reader
from noisylabels.errors import InputError

CLASS_TO_ID = {"cat": 0, "dog": 1}


def _write(tmp_path, rows):
    path = tmp_path / "all.tsv"
    path.write_text("".join("k%d\t%s\t%s\n" % (i, "cat" if i % 2 else "dog", feature)
                            for i, feature in enumerate(rows)))
    return path


def test_parallel_parts_give_the_plain_parse(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(7, 5)) * 10.0 ** rng.integers(-8, 8, size=(7, 5))
    rows = [",".join(repr(float(v)) for v in row) for row in values]
    chunks = list(tsv_reader.iter_tsv_chunks(_write(tmp_path, rows), "all", CLASS_TO_ID, chunk_rows=5))
    features = np.concatenate([chunk.features for chunk in chunks])
    expected = np.array([[float(x) for x in row.split(",")] for row in rows], dtype=np.float32)
    np.testing.assert_array_equal(features, expected)
    assert [len(chunk) for chunk in chunks] == [5, 2]
    np.testing.assert_array_equal(np.concatenate([c.class_ids for c in chunks]), [1, 0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize("bad_row, line, message", [
    (1, 2, "value 2 ('x') is not a number"),  # in the first part
    (4, 5, "value 2 ('x') is not a number"),  # in the second part
])
def test_a_bad_value_in_either_part_names_its_line(tmp_path, bad_row, line, message):
    rows = ["0.5,1.5,2.5"] * 6
    rows[bad_row] = "0.5,x,2.5"
    with pytest.raises(InputError) as err:
        list(tsv_reader.iter_tsv_chunks(_write(tmp_path, rows), "all", CLASS_TO_ID))
    assert ":%d: feature: %s" % (line, message) in str(err.value)


def test_parts_of_different_widths_are_refused_at_the_first_short_line(tmp_path):
    rows = ["0.5,1.5,2.5"] * 3 + ["0.5,1.5"] * 3  # each part alone is rectangular
    with pytest.raises(InputError) as err:
        list(tsv_reader.iter_tsv_chunks(_write(tmp_path, rows), "all", CLASS_TO_ID))
    assert ":4: feature: 2 values, expected 3 (from line 1)" in str(err.value)


def _refuse_slow_parse(monkeypatch):
    """Makes the line-by-line fallback fail the test: the fast path must read the file."""
    def fail(*args):
        raise AssertionError("the fast parse failed on a valid file")
    monkeypatch.setattr(tsv_reader._ChunkParser, "_parse_features_slow", fail)


def test_fast_path_reads_crlf_bom_commas_and_tabs_in_the_metadata(tmp_path, monkeypatch):
    """Keys and URLs with commas, spaces and quotes, CRLF line ends, a byte-order mark and
    trailing empty lines: all parsed by the fast path, to the values float() gives."""
    _refuse_slow_parse(monkeypatch)
    rows = [("k,%d" % i, "http://x/a,b \"c\" %d.jpg" % i, "cat" if i % 2 else "dog",
             ["%.17g" % (0.1 * i + j * 1e-7) for j in range(3)]) for i in range(6)]
    text = "".join("%s\t%s\t%s\t%s\r\n" % (key, url, name, ",".join(values))
                   for key, url, name, values in rows)
    path = tmp_path / "all.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode() + b"\r\n\n")
    chunks = list(tsv_reader.iter_tsv_chunks(path, "all", CLASS_TO_ID, chunk_rows=4))
    features = np.concatenate([chunk.features for chunk in chunks])
    expected = np.array([[float(v) for v in values] for *_, values in rows], dtype=np.float32)
    np.testing.assert_array_equal(features, expected)
    assert sum((chunk.keys for chunk in chunks), []) == [key for key, *_ in rows]
    assert sum((chunk.urls for chunk in chunks), []) == [url for _, url, *_ in rows]
    np.testing.assert_array_equal(np.concatenate([c.line_numbers for c in chunks]), np.arange(1, 7))


def test_lines_longer_than_a_read_give_the_same_rows(tmp_path, monkeypatch):
    """Rows cut across many small reads come out whole, with their line numbers."""
    values = np.arange(40, dtype=np.float64).reshape(4, 10) / 8.0
    path = _write(tmp_path, [",".join(repr(v) for v in row) for row in values])
    blocks = tsv_reader._iter_line_blocks(str(path), 3, lambda: 1 << 20, read_bytes=7)
    lines = [bytes(block.data[a:b]) for block in blocks for a, b in zip(block.starts, block.ends)]
    assert lines == path.read_bytes().splitlines()


@pytest.mark.parametrize("bad", ["nan", "inf", "True", "", "1,2", "0x1"])
def test_parse_feature_rows_refuses_what_is_not_a_finite_number(bad, monkeypatch):
    """None (the caller then parses line by line) for each bad value, in any row; no child
    process is started."""
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("feature_text forked a process"))
    for bad_row in (0, 3):
        rows = ["k\t1,2"] * 4
        rows[bad_row] = "k\t1,%s" % bad
        text = bytearray("\n".join(rows).encode())
        starts = [sum(len(r) + 1 for r in rows[:i]) for i in range(4)]
        result = feature_text.parse_feature_rows(text, starts, [s + 2 for s in starts],
                                                 [s + len(r) for s, r in zip(starts, rows)], 2)
        assert result is None, (bad, bad_row)


def test_parse_feature_rows_reads_each_decimal_as_float_then_float32():
    """Values across the float32 range, written with 3 to 17 digits, come out as
    np.float32(float(text)): the rounding a plain Python parser gives."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(300, 8)) * 10.0 ** rng.integers(-40, 38, size=(300, 8))
    rows = ["key %d\t%s" % (i, ",".join(("%%.%dg" % (3 + (i + j) % 15)) % v for j, v in enumerate(row)))
            for i, row in enumerate(values)]
    text = bytearray("\n".join(rows).encode())
    starts = [sum(len(r) + 1 for r in rows[:i]) for i in range(len(rows))]
    feature_starts = [s + r.index("\t") + 1 for s, r in zip(starts, rows)]
    result = feature_text.parse_feature_rows(text, starts, feature_starts,
                                             [s + len(r) for s, r in zip(starts, rows)], 8)
    expected = np.array([[np.float32(float(v)) for v in r.split("\t")[1].split(",")] for r in rows])
    np.testing.assert_array_equal(result, expected)
