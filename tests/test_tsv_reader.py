"""Tests for util/tsv_reader.py: class lists and streaming TSV parsing."""

import numpy as np
import pytest

from cleannet import tsv_reader
from noisylabels.errors import InputError

CLASSES = ["apple", "banana split", "cherry"]
CLASS_TO_ID = {"apple": 0, "banana split": 1, "cherry": 2}


def fmt(row):
    """Feature vector as text; '%.9g' round-trips float32 exactly."""
    return ",".join("%.9g" % v for v in row)


def write(tmp_path, text, name="data.tsv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def read_all(path, kind, **kwargs):
    return list(tsv_reader.iter_tsv_chunks(path, kind, CLASS_TO_ID, **kwargs))


def error_of(path, kind, **kwargs):
    with pytest.raises(InputError) as info:
        read_all(path, kind, **kwargs)
    return str(info.value)


# --- class lists ---------------------------------------------------------------------

def test_class_list_crlf_and_trailing_newline(tmp_path):
    path = write(tmp_path, "apple\r\nbanana split\r\ncherry\r\n\n", "classes.txt")
    assert tsv_reader.read_class_list(path) == CLASSES


def test_class_list_without_final_newline(tmp_path):
    path = write(tmp_path, "apple\nbanana split\ncherry", "classes.txt")
    assert tsv_reader.read_class_list(path) == CLASSES


@pytest.mark.parametrize("text, expected", [
    ("", "classes.txt: empty class list"),
    ("\n\n", "classes.txt: empty class list"),
    ("apple\n\ncherry\n", "classes.txt:2: class_name: empty class name"),
    ("apple\ncherry\napple\n", "classes.txt:3: class_name: duplicate class name 'apple' "
                               "(first on line 1)"),
])
def test_class_list_errors(tmp_path, text, expected):
    path = write(tmp_path, text, "classes.txt")
    with pytest.raises(InputError) as info:
        tsv_reader.read_class_list(path)
    assert str(info.value).startswith(str(tmp_path / expected.split(":")[0]))
    assert expected in str(info.value)


def test_class_list_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        tsv_reader.read_class_list(str(tmp_path / "nope.txt"))


# --- verified rows -------------------------------------------------------------------

def test_verified_both_layouts_in_chunks(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((5, 4)).astype(np.float32) * 100
    class_ids = [2, 0, 1, 1, 0]
    vlabels = [1, 0, -1, 1, 1]
    lines = []
    for i in range(5):
        key = "img,%d" % i  # keys may contain commas
        name = CLASSES[class_ids[i]]
        if i % 2:
            lines.append("%s\thttp://x/%d.jpg\t%s\t%d\t%s" % (key, i, name, vlabels[i],
                                                             fmt(features[i])))
        else:
            lines.append("%s\t%s\t%d\t%s" % (key, name, vlabels[i], fmt(features[i])))
    path = write(tmp_path, "\r\n".join(lines) + "\r\n")

    chunks = read_all(path, "verified", chunk_rows=2)
    assert [c.first_line for c in chunks] == [1, 3, 5]
    assert [len(c) for c in chunks] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([c.line_numbers for c in chunks]),
                                  [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(np.concatenate([c.features for c in chunks]), features)
    assert chunks[0].features.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([c.class_ids for c in chunks]), class_ids)
    assert chunks[0].class_ids.dtype == np.int32
    np.testing.assert_array_equal(np.concatenate([c.vlabels for c in chunks]), vlabels)
    assert chunks[0].vlabels.dtype == np.int8
    assert sum((c.keys for c in chunks), []) == ["img,%d" % i for i in range(5)]
    assert sum((c.urls for c in chunks), []) == [None, "http://x/1.jpg", None,
                                                 "http://x/3.jpg", None]
    assert sum((c.class_names for c in chunks), []) == [CLASSES[c] for c in class_ids]
    assert all(c.ref_ids is None for c in chunks)


def test_all_and_ref_rows(tmp_path):
    path = write(tmp_path, "k0\tcherry\t1,2\nk1\thttp://u\tapple\t3.5,-4e-3\n")
    (chunk,) = read_all(path, "all")
    np.testing.assert_array_equal(chunk.features, np.array([[1, 2], [3.5, -4e-3]], np.float32))
    np.testing.assert_array_equal(chunk.class_ids, [2, 0])
    assert chunk.urls == [None, "http://u"] and chunk.vlabels is None

    path = write(tmp_path, "banana split\t7\t0.25,8\ncherry\t0\t1,1\n\n\n", "ref.tsv")
    (chunk,) = read_all(path, "ref")
    np.testing.assert_array_equal(chunk.ref_ids, [7, 0])
    np.testing.assert_array_equal(chunk.class_ids, [1, 2])
    np.testing.assert_array_equal(chunk.features, np.array([[0.25, 8], [1, 1]], np.float32))
    assert chunk.keys is None and chunk.urls is None


def test_exact_float32_round_trip_of_wide_rows(tmp_path):
    rng = np.random.default_rng(1)
    features = (rng.standard_normal((7, 300)) * 10.0 ** rng.integers(-20, 20, (7, 300)))
    features = features.astype(np.float32)
    path = write(tmp_path, "".join("k%d\tapple\t%s\n" % (i, fmt(row))
                                   for i, row in enumerate(features)))
    chunks = read_all(path, "all", img_dim=300, chunk_rows=3)
    np.testing.assert_array_equal(np.concatenate([c.features for c in chunks]), features)


# --- errors --------------------------------------------------------------------------

GOOD = "k\tapple\t1\t1,2,3\n"


@pytest.mark.parametrize("text, kwargs, expected", [
    (GOOD + "k\tapple\t1\t1,abc,3\n", {}, ":2: feature: value 2 ('abc') is not a number"),
    (GOOD + "k\tapple\t1\t1,2\n", {}, ":2: feature: 2 values, expected 3 (from line 1)"),
    (GOOD + "k\tapple\t1\t1,2,3,4\n", {}, ":2: feature: 4 values, expected 3 (from line 1)"),
    (GOOD, {"img_dim": 4}, ":1: feature: 3 values, expected 4 (from --img_dim)"),
    (GOOD + "k\tapple\t1\t1,nan,3\n", {}, ":2: feature: nan/inf at value 2"),
    (GOOD + "k\tapple\t1\t1,2,-inf\n", {}, ":2: feature: nan/inf at value 3"),
    (GOOD + "k\tapple\t1\t1,2,1e39\n", {}, ":2: feature: value 3 ('1e39') is out of the "
                                           "float32 range"),
    (GOOD + "k\t1\t1,2,3\n", {}, ":2: expected 4 or 5 tab-separated columns, found 3"),
    (GOOD + "k\ta\tb\tapple\t1\t1,2,3\n", {}, ":2: expected 4 or 5 tab-separated columns, "
                                             "found 6"),
    (GOOD + "k\tfoo\t1\t1,2,3\n", {}, ":2: class_name: unknown class 'foo' (not in "
                                      "classes.txt)"),
    (GOOD + "k\tapple\t2\t1,2,3\n", {}, ":2: vlabel: expected 1, 0 or -1, found '2'"),
    (GOOD + "\n" + GOOD, {}, ":2: empty line"),
    ("", {}, ": no rows (the file is empty)"),
    ("\r\n\n", {}, ": no rows (the file is empty)"),
    # The first bad line is reported even when a later line of the chunk is bad in
    # another way, and in a later chunk.
    (GOOD + "k\tapple\t1\t1,x,3\nk\tfoo\t1\t1,2,3\n", {}, ":2: feature: value 2 ('x')"),
    (GOOD * 5 + "k\tapple\t1\t1,2\n", {"chunk_rows": 2}, ":6: feature: 2 values, expected 3"),
])
def test_verified_errors(tmp_path, text, kwargs, expected):
    path = write(tmp_path, text)
    message = error_of(path, "verified", class_list_path="classes.txt", **kwargs)
    assert message.startswith(path + expected), message


@pytest.mark.parametrize("text, expected", [
    ("apple\tx\t1,2\n", ":1: ref_id: expected a non-negative integer, found 'x'"),
    ("apple\t-1\t1,2\n", ":1: ref_id: expected a non-negative integer, found '-1'"),
    ("k\tapple\t0\t1,2\n", ":1: expected 3 tab-separated columns, found 4"),
])
def test_ref_errors(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert error_of(path, "ref").startswith(path + expected)


def test_missing_file(tmp_path):
    path = str(tmp_path / "missing.tsv")
    assert error_of(path, "all") == path + ": file not found"


WRONG_LAYOUT = [
    # (the file's rows, the layout expected, the error's start)
    ("k1\tapple\t1\t0.5,0.5\n", "all", "unknown class '1'"),
    ("k1\thttp://x\tapple\t0\t0.5,0.5\n", "all", "expected 3 or 4 tab-separated columns, found 5"),
    ("k1\tapple\t0.5,0.5\n", "verified", "expected 4 or 5 tab-separated columns, found 3"),
    ("k1\thttp://x\tcherry\t0.5,0.5\n", "verified", "vlabel: expected 1, 0 or -1, found 'cherry'"),
]


@pytest.mark.parametrize("text, kind, start", WRONG_LAYOUT)
def test_a_file_of_the_other_layout_is_named_as_such(tmp_path, text, kind, start):
    message = error_of(write(tmp_path, text), kind)
    other = "a verified TSV" if kind == "all" else "an all-samples TSV"
    assert start in message and ("this row looks like %s" % other) in message, message


def test_a_plain_bad_row_gets_no_layout_hint(tmp_path):
    assert "looks like" not in error_of(write(tmp_path, "k1\tdurian\t0.5,0.5\n"), "all")
    assert "looks like" not in error_of(write(tmp_path, "k1\tapple\t7\t0.5,0.5\n"), "verified")
