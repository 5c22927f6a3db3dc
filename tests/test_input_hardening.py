"""Bad inputs beyond the first catalogue (docs/errors.md, "Inputs, second round").

All in-process: each reader either returns exactly what the file says or raises one
`InputError` naming the file, the line and the field.
"""

import tracemalloc

import numpy as np
import pytest

from cleannet import datafiles, tsv_reader
from noisylabels import fileio, strict_numbers
from noisylabels.errors import InputError
from noisylabels.fileio import save_npy

CLASS_TO_ID = {"apple": 0, "banana": 1}


# ---------------------------------------------------------------------------------------
# Strict numbers.

@pytest.mark.parametrize("text", ["True", "false", "1_0", "0x1A", "\u0661", "1.0", "nan", "", " ", "+", "1e3"])
def test_parse_int_refuses_what_int_accepts_and_garbage(text):
    with pytest.raises(InputError) as err:
        strict_numbers.parse_int(text, "f.txt", 7, "label")
    assert str(err.value).startswith("f.txt:7: label: expected an integer, found ")


@pytest.mark.parametrize("text, expected", [("12", 12), (" -3 ", -3), ("+4\r\n", 4), ("007", 7)])
def test_parse_int_accepts_plain_decimals(text, expected):
    assert strict_numbers.parse_int(text) == expected


@pytest.mark.parametrize("text", ["True", "1_0", "0x1p3", "nan", "inf", "-Infinity", "1e999", "\u0661", "1,5", ""])
def test_parse_float_refuses_non_finite_and_non_decimal(text):
    with pytest.raises(InputError, match=r"^w\.tsv:3: soft_weight: "):
        strict_numbers.parse_float(text, "w.tsv", 3, "soft_weight")


@pytest.mark.parametrize("text, expected", [("0.25", 0.25), ("-1e-3", -0.001), (".5", 0.5), ("3.", 3.0)])
def test_parse_float_accepts_decimal_notation(text, expected):
    assert strict_numbers.parse_float(text) == expected


# ---------------------------------------------------------------------------------------
# TSV features: booleans, and a line longer than any valid row.

@pytest.mark.parametrize("token", ["True", "false", "TRUE"])
def test_tsv_boolean_feature_is_not_a_number(tmp_path, token):
    """Some fast parsers (pandas') read True / False as 1 / 0; the reader refuses them."""
    path = tmp_path / "in.tsv"
    path.write_text("k1\tapple\t1,2\nk2\tbanana\t%s,2\n" % token)
    with pytest.raises(InputError) as err:
        list(tsv_reader.iter_tsv_chunks(str(path), "all", CLASS_TO_ID))
    assert str(err.value) == "%s:2: feature: value 1 (%r) is not a number" % (path, token)


@pytest.mark.parametrize("img_dim", [4, None])
def test_tsv_memory_stays_bounded_by_img_dim_whatever_a_line_holds(tmp_path, img_dim):
    """A 40 MB line is refused after reading at most one valid row's length of it (it
    used to cost about 450 bytes of memory per byte): the peak is a few read blocks and
    twice the longest valid row, far below the line's size."""
    budget = 4 * (1 << 20) + 2 * tsv_reader.max_line_bytes(img_dim)
    path = tmp_path / "in.tsv"
    with open(path, "wb") as f:
        f.write(b"k1\tapple\t1,2,3,4\n")
        f.write(b"k2\tapple\t" + b"1," * (20 << 20) + b"1\n")
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as err:
            list(tsv_reader.iter_tsv_chunks(str(path), "all", CLASS_TO_ID, img_dim=img_dim))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(err.value).startswith("%s:2: line is longer than any valid row can be (more than %d bytes"
                                     % (path, tsv_reader.max_line_bytes(img_dim)))
    assert peak < budget, (peak, budget)
    print("peak %.1f MiB for a %.0f MiB line (img_dim %s)" % (peak / 2 ** 20, path.stat().st_size / 2 ** 20, img_dim))


def test_tsv_longest_valid_row_is_read(tmp_path):
    """The bound admits every valid row: img_dim values of the longest repr, a long url."""
    value = repr(-1.2345678901234567e-300)
    row = "k\thttp://x/%s\tapple\t%s\n" % ("u" * 60000, ",".join([value] * 8))
    path = tmp_path / "in.tsv"
    path.write_text(row)
    chunk, = tsv_reader.iter_tsv_chunks(str(path), "all", CLASS_TO_ID, img_dim=8)
    assert chunk.features.shape == (1, 8) and chunk.features[0, 0] == np.float32(-1.2345678901234567e-300)


# ---------------------------------------------------------------------------------------
# Non-finite values in .npy inputs.

def test_nan_in_all_npy_names_file_and_row(tmp_path):
    """all.npy is memory-mapped; the check streams it (a NaN used to reach training)."""
    table = np.c_[np.ones((10, 3)), np.repeat([0, 1], 5)].astype(np.float32)
    table[7, 1] = np.nan
    save_npy(tmp_path / "all.npy", table)
    with pytest.raises(InputError) as err:
        datafiles.load_all(str(tmp_path / "all.npy"), 3)
    assert str(err.value) == "%s: row 7 holds nan or inf; every value must be finite" % (tmp_path / "all.npy")


def test_check_finite_streams_blocks(tmp_path):
    array = np.zeros((1000, 4), np.float64)
    array[999, 3] = -np.inf
    with pytest.raises(InputError, match="row 999 holds nan or inf"):
        fileio.check_finite(array, "x.npy", block_bytes=64)  # 2 rows per block
    fileio.check_finite(np.zeros((3, 0)), "empty.npy")
    fileio.check_finite(np.array([1, 2], np.int64), "ints.npy")


def test_classifier_npy_with_inf_is_refused(tmp_path):
    from cleannet.classifier.data import load_samples

    table = np.c_[np.ones((4, 2)), [0, 1, 0, 1]].astype(np.float32)
    table[2, 0] = np.inf
    save_npy(tmp_path / "train.npy", table)
    with pytest.raises(InputError, match=r"train\.npy: row 2 holds nan or inf"):
        load_samples(str(tmp_path / "train.npy"), ["apple", "banana"], img_dim=2)


def test_matrix_c_with_nan_is_refused(tmp_path):
    from noise_model.data import datasets

    matrix = np.full((3, 3), 0.5)
    matrix[2, 1] = np.nan
    np.save(tmp_path / "matrix_c.npy", matrix)
    with pytest.raises(InputError, match=r"matrix_c\.npy: matrix_c: row 2 holds nan or inf"):
        datasets.load_matrix_c(str(tmp_path), 3)


# ---------------------------------------------------------------------------------------
# Text lists: labels, byte-order marks, CRLF, UTF-8.

def test_noise_labels_text_is_strict_and_accepts_bom_crlf(tmp_path):
    from noise_model.data import noise

    good = tmp_path / "good.txt"
    good.write_bytes(b"\xef\xbb\xbf0\r\n2\r\n\r\n1\r\n")
    np.testing.assert_array_equal(noise.read_labels(str(good), "clean_labels"), [0, 2, 1])
    for text, line in [("0\nTrue\n", 2), ("1_0\n", 1), ("0\n\n0x2\n", 3)]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(InputError) as err:
            noise.read_labels(str(bad), "clean_labels")
        assert str(err.value).startswith("%s:%d: clean_labels: expected an integer" % (bad, line))


def test_prepared_clothing1m_list_labels_are_strict(tmp_path):
    from noise_model.data import datasets

    path = tmp_path / "test.txt"
    path.write_bytes(b"\xef\xbb\xbfimages/a.jpg 1 1 0\r\nimages/b.jpg 2 True -1\r\n")
    with pytest.raises(InputError) as err:
        datasets.read_split_list(str(path), str(tmp_path), 14)
    assert str(err.value) == "%s:2: noisy: expected an integer, found 'True'" % path
    path.write_bytes(b"\xef\xbb\xbfimages/a.jpg 1 1 0\r\n")
    paths, labels = datasets.read_split_list(str(path), str(tmp_path), 14)
    assert paths == [str(tmp_path / "images/a.jpg")] and labels.tolist() == [[1, 1, 0]]


def test_weights_file_with_bom_and_non_utf8(tmp_path):
    from cleannet.classifier.weights import read_weights

    path = tmp_path / "w.tsv"
    path.write_bytes(b"\xef\xbb\xbfkey\tclass_name\tsoft_weight\thard_weight\r\nk1\tapple\t0.5\t1\r\n")
    assert read_weights(str(path)) == {"k1": ("apple", 0.5, 1.0)}
    path.write_bytes(b"key\tclass_name\tsoft_weight\thard_weight\nk\xe91\tapple\t0.5\t1\n")
    with pytest.raises(InputError) as err:
        read_weights(str(path))
    assert str(err.value).startswith("%s:2: --weights_file: not valid UTF-8 text" % path)
    path.write_bytes(b"key\tclass_name\tsoft_weight\thard_weight\nk1\tapple\tTrue\t1\n")
    with pytest.raises(InputError, match=r"w\.tsv:2: soft_weight: expected a number, found 'True'"):
        read_weights(str(path))


def test_image_list_with_bom(tmp_path):
    from cleannet.image_input import read_image_list

    (tmp_path / "a.jpg").write_bytes(b"x")
    path = tmp_path / "list.tsv"
    path.write_bytes(b"\xef\xbb\xbfk1\ta.jpg\tapple\r\n")
    images = read_image_list(str(path), ["apple"])
    assert images.keys == ["k1"] and images.labels == [0]


def test_text_line_longer_than_the_bound_is_refused_early(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_bytes(b"a\n" + b"x" * 5000 + b"\n")
    with pytest.raises(InputError, match=r"keys\.txt:2: line longer than 1000 bytes, more than a valid line can be"):
        list(fileio.iter_text_lines(str(path), max_line_bytes=1000))


# ---------------------------------------------------------------------------------------
# The caffemodel reader.

def _caffemodel(tmp_path, shape=None, legacy=None, values=(1.0, 2.0), name=b"ip1"):
    from noise_model.model import caffe_proto

    net = caffe_proto.NetParameter()
    layer = net.layer.add(name="ipX", type="InnerProduct")  # 3 bytes, as every `name`
    blob = layer.blobs.add()
    if shape is not None:
        blob.shape.dim.extend(shape)
    if legacy is not None:
        blob.num, blob.channels, blob.height, blob.width = legacy
    blob.data.extend(values)
    path = tmp_path / "net.caffemodel"
    path.write_bytes(net.SerializeToString().replace(b"ipX", name))
    return str(path)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(shape=[-1, -2]), "layer ip1: blob shape [-1, -2] has a dimension below 1"),
    (dict(legacy=(-1, -2, 1, 1)), "layer ip1: blob shape [-1, -2, 1, 1] has a dimension below 1"),
    (dict(shape=[2 ** 32, 2 ** 32], values=()), "layer ip1: blob shape [4294967296, 4294967296] holds "
                                                "18446744073709551616 values, found 0"),
    (dict(shape=[2], values=(np.nan, 1.0)), "layer ip1: blob value 0 is nan or inf"),
    (dict(shape=[2], name=b"ip\xff"), "layer name b'ip\\xff' is not valid UTF-8"),
], ids=["negative_dims", "legacy_negative_dims", "overflowing_dims", "nan_value", "non_utf8_name"])
def test_caffemodel_bad_blobs(tmp_path, kwargs, expected):
    from noise_model.model.caffe_import import load_caffemodel

    path = _caffemodel(tmp_path, **kwargs)
    with pytest.raises(InputError) as err:
        load_caffemodel(path)
    assert str(err.value).startswith(path + ": " + expected), str(err.value)
