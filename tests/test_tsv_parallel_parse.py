"""util/tsv_reader.py parses a chunk's features in parallel parts: the same values as a
plain Python parse, and bad rows still reported at their own line."""

import numpy as np
import pytest

from noisylabels import tsv_reader
from noisylabels.errors import InputError

CLASS_TO_ID = {"cat": 0, "dog": 1}


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of one row, so that a small file is parsed in PARSE_THREADS = 2 parts."""
    monkeypatch.setattr(tsv_reader, "PARSE_THREADS", 2)
    monkeypatch.setattr(tsv_reader, "MIN_ROWS_PER_THREAD", 1)


def _write(tmp_path, rows):
    path = tmp_path / "all.tsv"
    path.write_text("".join("k%d\t%s\t%s\n" % (i, "cat" if i % 2 else "dog", feature)
                            for i, feature in enumerate(rows)))
    return path


def test_parallel_parts_give_the_plain_parse(tmp_path, small_parts):
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
def test_a_bad_value_in_either_part_names_its_line(tmp_path, small_parts, bad_row, line, message):
    rows = ["0.5,1.5,2.5"] * 6
    rows[bad_row] = "0.5,x,2.5"
    with pytest.raises(InputError) as err:
        list(tsv_reader.iter_tsv_chunks(_write(tmp_path, rows), "all", CLASS_TO_ID))
    assert ":%d: feature: %s" % (line, message) in str(err.value)


def test_parts_of_different_widths_are_refused_at_the_first_short_line(tmp_path, small_parts):
    rows = ["0.5,1.5,2.5"] * 3 + ["0.5,1.5"] * 3  # each part alone is rectangular
    with pytest.raises(InputError) as err:
        list(tsv_reader.iter_tsv_chunks(_write(tmp_path, rows), "all", CLASS_TO_ID))
    assert ":4: feature: 2 values, expected 3 (from line 1)" in str(err.value)
