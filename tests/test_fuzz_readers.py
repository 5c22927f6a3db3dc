"""Property tests (hypothesis) on the readers test_fuzz.py does not cover: the Clothing1M
label and key lists, the caffemodel reader and the classifier's weight files.

Each property: a generated valid file parses to exactly what was written (whatever its
line ends, byte-order mark and blank lines); a file with one corrupted line raises
`InputError` naming that file and line; arbitrary bytes give a result or an `InputError`,
never another exception.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noise_model.data import clothing1m
from noise_model.model import caffe_proto
from noise_model.model.caffe_import import load_caffemodel
from cleannet.classifier.weights import WEIGHTS_HEADER, read_weights
from noisylabels.errors import InputError

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Key characters: path-like ASCII and a few non-ASCII letters (keys are split on blanks).
KEY = st.lists(st.text("abcXYZ019_-.é中", min_size=1, max_size=6), min_size=1, max_size=3).map(
    lambda parts: "images/" + "/".join(p if p not in (".", "..") else p + "x" for p in parts) + ".jpg")
# Tokens Python's int() or float() accept that a data file must not (or plain garbage).
BAD_INTEGERS = ["True", "false", "1_0", "0x1", "\u0661", "1.0", "nan", "", "1e1", "--1", "14", "-2"]
BAD_NUMBERS = ["True", "FALSE", "1_0", "0x1", "\u0661", "nan", "inf", "-inf", "1e999", "", "abc", "1.2.3", "-1"]
LINE_ENDS = st.sampled_from(["\n", "\r\n"])


def layout(lines, eol, bom, blank_after):
    """File bytes: lines joined by eol, a blank line after index blank_after, maybe a BOM."""
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i == blank_after:
            out.append("")
    return (b"\xef\xbb\xbf" if bom else b"") + (eol.join(out) + eol).encode("utf-8")


def file_line_of(index, blank_after):
    """1-based file line of lines[index] once the blank line is inserted."""
    return index + 1 + (1 if blank_after is not None and blank_after < index else 0)


# ---------------------------------------------------------------------------------------
# Clothing1M lists.

@FUZZ
@given(entries=st.dictionaries(KEY, st.integers(0, clothing1m.NUM_CLASSES - 1), min_size=1, max_size=8),
       eol=LINE_ENDS, bom=st.booleans(), blank=st.one_of(st.none(), st.integers(0, 7)),
       corrupt=st.one_of(st.none(), st.tuples(st.integers(0, 7), st.sampled_from(BAD_INTEGERS + ["latin1"]))))
def test_label_kv_parses_exactly_or_names_the_line(tmp_path, entries, eol, bom, blank, corrupt):
    keys = list(entries)
    lines = ["%s %d" % (k, entries[k]) for k in keys]
    target = None
    if corrupt is not None:
        target = corrupt[0] % len(lines)
        lines[target] = keys[target] + " " + corrupt[1] if corrupt[1] != "latin1" else None
    path = tmp_path / "noisy_label_kv.txt"
    data = layout([l if l is not None else "@@" for l in lines], eol, bom, blank)
    if corrupt is not None and corrupt[1] == "latin1":
        data = data.replace(b"@@", keys[target].encode("utf-8") + b" \xe9")
    path.write_bytes(data)
    if target is None:
        assert clothing1m.read_label_kv(str(path)) == entries
        return
    with pytest.raises(InputError) as err:
        clothing1m.read_label_kv(str(path))
    assert err.value.path == str(path) and err.value.line == file_line_of(target, blank), str(err.value)


@FUZZ
@given(keys=st.lists(KEY, min_size=1, max_size=8, unique=True), eol=LINE_ENDS, bom=st.booleans(),
       blank=st.one_of(st.none(), st.integers(0, 7)),
       corrupt=st.one_of(st.none(), st.tuples(st.integers(0, 7), st.sampled_from(["two", "dotdot", "abs"]))))
def test_key_list_parses_exactly_or_names_the_line(tmp_path, keys, eol, bom, blank, corrupt):
    lines = list(keys)
    target = None
    if corrupt is not None:
        target = corrupt[0] % len(lines)
        lines[target] = {"two": keys[target] + " 3", "dotdot": "images/../" + keys[target],
                         "abs": "/" + keys[target]}[corrupt[1]]
    path = tmp_path / "clean_val_key_list.txt"
    path.write_bytes(layout(lines, eol, bom, blank))
    if target is None:
        got = clothing1m.read_key_list(str(path))
        assert [k for k, _ in got] == keys
        assert [n for _, n in got] == [file_line_of(i, blank) for i in range(len(keys))]
        return
    with pytest.raises(InputError) as err:
        clothing1m.read_key_list(str(path))
    assert err.value.path == str(path) and err.value.line == file_line_of(target, blank), str(err.value)


@FUZZ
@given(data=st.binary(max_size=200))
def test_label_kv_of_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "clean_label_kv.txt"
    path.write_bytes(data)
    try:
        labels = clothing1m.read_label_kv(str(path))
    except InputError as err:
        assert err.path == str(path)
        return
    assert all(0 <= v < clothing1m.NUM_CLASSES for v in labels.values())


# ---------------------------------------------------------------------------------------
# The caffemodel reader.

BLOB = st.lists(st.integers(1, 4), min_size=1, max_size=4).flatmap(
    lambda shape: st.tuples(st.just(shape), st.lists(st.floats(-1e3, 1e3, width=32), min_size=math.prod(shape),
                                                     max_size=math.prod(shape))))
LAYERS = st.dictionaries(st.text("abcdefgh_0123456789", min_size=1, max_size=6),
                         st.lists(BLOB, min_size=1, max_size=2), min_size=1, max_size=3)


def serialize(layers):
    net = caffe_proto.NetParameter(name="fuzz")
    for name, blobs in layers.items():
        layer = net.layer.add(name=name, type="InnerProduct")
        for shape, values in blobs:
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(values)
    return net.SerializeToString()


@FUZZ
@given(layers=LAYERS, mutation=st.one_of(st.none(), st.tuples(st.sampled_from(["truncate", "flip", "insert"]),
                                                               st.integers(0, 10 ** 6), st.integers(0, 255))))
def test_caffemodel_reads_exactly_or_raises_input_error(tmp_path, layers, mutation):
    data = serialize(layers)
    if mutation is not None:
        kind, at, byte = mutation
        at %= len(data)
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip":
            data = data[:at] + bytes([data[at] ^ (byte or 1)]) + data[at + 1:]
        else:
            data = data[:at] + bytes([byte]) + data[at:]
    path = tmp_path / "net.caffemodel"
    path.write_bytes(data)
    try:
        blobs = load_caffemodel(str(path))
    except InputError as err:
        assert str(err).startswith(str(path)), str(err)
        assert mutation is not None, str(err)
        return
    for name, arrays in blobs.items():
        assert isinstance(name, str)
        for array in arrays:
            assert array.dtype == np.float32 and np.all(np.isfinite(array))
    if mutation is None:
        assert set(blobs) == set(layers)
        for name, expected in layers.items():
            for array, (shape, values) in zip(blobs[name], expected):
                np.testing.assert_array_equal(array, np.array(values, np.float32).reshape(shape))


# ---------------------------------------------------------------------------------------
# The classifier's weight files (inference.py --output_weights).

WEIGHT = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
ROW = st.tuples(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=8),
                st.sampled_from(["apple", "b c", "ünï"]), WEIGHT, st.sampled_from([0.0, 1.0]))


@FUZZ
@given(rows=st.lists(ROW, min_size=0, max_size=6, unique_by=lambda r: r[0]), eol=LINE_ENDS, bom=st.booleans(),
       corrupt=st.one_of(st.none(), st.tuples(st.integers(0, 5), st.sampled_from(["soft", "hard", "columns"]),
                                              st.sampled_from(BAD_NUMBERS))))
def test_weights_file_parses_exactly_or_names_the_line(tmp_path, rows, eol, bom, corrupt):
    lines = ["\t".join(WEIGHTS_HEADER)] + ["%s\t%s\t%r\t%r" % row for row in rows]
    target = None
    if corrupt is not None and rows:
        target = corrupt[0] % len(rows)
        key, name, soft, hard = rows[target]
        token = corrupt[2]
        lines[target + 1] = {"soft": "%s\t%s\t%s\t%r" % (key, name, token, hard),
                             "hard": "%s\t%s\t%r\t%s" % (key, name, soft, token),
                             "columns": "%s\t%s\t%r" % (key, name, soft)}[corrupt[1]]
    path = tmp_path / "weights.tsv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (eol.join(lines) + eol).encode("utf-8"))
    if target is None:
        assert read_weights(str(path)) == {k: (n, s, h) for k, n, s, h in rows}
        return
    with pytest.raises(InputError) as err:
        read_weights(str(path))
    assert err.value.path == str(path) and err.value.line == target + 2, str(err.value)
