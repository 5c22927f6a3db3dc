"""Property tests (hypothesis) on the TSV reader and on the noise-matrix estimates.

The TSV property: any generated verified TSV either parses to exactly the rows that were
written, or (when one row was corrupted) raises `InputError` naming the corrupted line;
never another exception and never a silently wrong value.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noise_model.data import noise
from noisylabels.errors import InputError
from cleannet.tsv_reader import iter_tsv_chunks, make_class_to_id

CLASSES = ["apple", "b c", "ünï", "x,y", "Z"]
CLASS_TO_ID = make_class_to_id(CLASSES)

# Printable text without tabs or line ends (no control characters, no surrogates); a
# byte-order mark is excluded because one at the very start of the file is documented to
# be ignored.
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufeff"),
               max_size=12)
FLOAT32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
ANY_FLOAT = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30)


@st.composite
def verified_tsv(draw):
    """(rows, h, corruption, corrupted row index, crlf, final newline)."""
    h = draw(st.integers(1, 6))
    n = draw(st.integers(1, 6))
    rows = []
    for _ in range(n):
        rows.append({
            "key": draw(TEXT),
            "url": draw(st.one_of(st.none(), TEXT)),
            "class": draw(st.sampled_from(CLASSES)),
            "vlabel": draw(st.sampled_from([1, 0, -1])),
            "feature": draw(st.lists(st.one_of(FLOAT32, ANY_FLOAT), min_size=h, max_size=h)),
        })
    corruption = draw(st.sampled_from([None, None, "drop_column", "non_number", "extra_value",
                                       "missing_value", "nan", "unknown_class", "bad_vlabel"]))
    target = draw(st.integers(0, n - 1))
    token = draw(st.sampled_from(["abc", "", "1.2.3", "0x10", "1e", "--1", "1,", " ", "True", "false", "1_0"]))
    return rows, h, corruption, target, token, draw(st.booleans()), draw(st.booleans())


def row_columns(row):
    columns = [row["key"]] + ([row["url"]] if row["url"] is not None else [])
    return columns + [row["class"], str(row["vlabel"])]


def feature_text(values):
    return ",".join(repr(float(v)) for v in values)


def corrupt(row, corruption, token):
    """The columns of `row` with one corruption applied (each always makes the row bad)."""
    columns = row_columns(row)
    values = [repr(float(v)) for v in row["feature"]]
    if corruption == "drop_column":
        del columns[-1]  # the vlabel: too few columns, or a class name read as the vlabel
    elif corruption == "non_number":
        values[len(values) // 2] = token if token.strip() else "abc"
    elif corruption == "extra_value":
        values.append("1.0")
    elif corruption == "missing_value":
        values.pop()
        if not values:
            values = ["1.0", "2.0"]
    elif corruption == "nan":
        values[0] = "nan"
    elif corruption == "unknown_class":
        columns[-2] = "no such class"
    elif corruption == "bad_vlabel":
        columns[-1] = "2"
    return columns + [",".join(values)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=verified_tsv(), chunk_rows=st.integers(1, 4), give_dim=st.booleans())
def test_tsv_parses_exactly_or_raises_input_error(tmp_path, data, chunk_rows, give_dim):
    rows, h, corruption, target, token, crlf, final_newline = data
    if corruption in ("extra_value", "missing_value"):
        give_dim = True  # a single row of another length is only wrong against --img_dim
    lines = []
    for i, row in enumerate(rows):
        if corruption is not None and i == target:
            lines.append("\t".join(corrupt(row, corruption, token)))
        else:
            lines.append("\t".join(row_columns(row) + [feature_text(row["feature"])]))
    eol = "\r\n" if crlf else "\n"
    text = eol.join(lines) + (eol if final_newline else "")
    path = tmp_path / "fuzz.tsv"
    path.write_bytes(text.encode("utf-8"))

    expected_features = np.array([r["feature"] for r in rows], dtype=np.float64)
    with np.errstate(over="ignore"):
        in_float32_range = np.all(np.isfinite(expected_features.astype(np.float32)))
    try:
        chunks = list(iter_tsv_chunks(str(path), "verified", CLASS_TO_ID, img_dim=h if give_dim else None,
                                      chunk_rows=chunk_rows))
    except InputError as err:
        if corruption is None:
            assert not in_float32_range, str(err)  # the only legitimate failure
            assert "out of the float32 range" in str(err)
            return
        if in_float32_range or "float32 range" not in str(err):
            assert err.line == target + 1, (str(err), target)
        return
    assert corruption is None, "corruption %r of line %d was accepted" % (corruption, target + 1)
    assert in_float32_range
    assert all(0 < len(c) <= chunk_rows for c in chunks)
    keys = [k for c in chunks for k in c.keys]
    urls = [u for c in chunks for u in c.urls]
    assert keys == [r["key"] for r in rows]
    assert urls == [r["url"] for r in rows]
    assert [n for c in chunks for n in c.class_names] == [r["class"] for r in rows]
    np.testing.assert_array_equal(np.concatenate([c.class_ids for c in chunks]),
                                  [CLASS_TO_ID[r["class"]] for r in rows])
    np.testing.assert_array_equal(np.concatenate([c.vlabels for c in chunks]), [r["vlabel"] for r in rows])
    np.testing.assert_array_equal(np.concatenate([c.line_numbers for c in chunks]), np.arange(1, len(rows) + 1))
    features = np.concatenate([c.features for c in chunks])
    assert features.dtype == np.float32 and features.shape == (len(rows), h)
    # Each written decimal string, correctly rounded to float32 (Python's float() is
    # correctly rounded; a float64 → float32 cast can differ only on double-rounding ties,
    # which repr() strings of float32 values never hit).
    np.testing.assert_array_equal(features, expected_features.astype(np.float32))


LABEL_PAIRS = st.integers(2, 6).flatmap(lambda L: st.tuples(
    st.just(L),
    st.lists(st.tuples(st.integers(0, L - 1), st.integers(0, L - 1)), min_size=0, max_size=60)))


@settings(max_examples=200, deadline=None)
@given(pairs=LABEL_PAIRS)
def test_matrix_c_and_noise_types_properties(pairs):
    num_classes, label_pairs = pairs
    clean = np.array([p[0] for p in label_pairs], dtype=np.int64)
    noisy = np.array([p[1] for p in label_pairs], dtype=np.int64)
    matrix_c = noise.compute_matrix_c(clean, noisy, num_classes)
    assert matrix_c.shape == (num_classes, num_classes)
    assert np.all(matrix_c >= 0) and np.all(np.isfinite(matrix_c))
    np.testing.assert_array_equal(np.diag(matrix_c), 0.0)
    sums = matrix_c.sum(axis=0)
    for y in range(num_classes):
        # A class with a mislabelled pair has a distribution; one without has none.
        mislabelled = np.any((clean == y) & (noisy != y))
        assert sums[y] == pytest.approx(1.0 if mislabelled else 0.0, abs=1e-12)
        # Kept entries are a subset of the observed confusions.
        observed = np.zeros(num_classes, bool)
        observed[noisy[(clean == y) & (noisy != y)]] = True
        assert not np.any((matrix_c[:, y] > 0) & ~observed)

    types = noise.get_noise_types(clean, noisy, matrix_c)
    assert types.shape == clean.shape
    assert set(np.unique(types)) <= {0, 1, 2}
    np.testing.assert_array_equal(types == 0, clean == noisy)
    for t, y, y_noisy in zip(types, clean, noisy):
        if y != y_noisy:
            assert t == (2 if matrix_c[y_noisy, y] > 1.0 / (num_classes - 1) else 1)


@settings(max_examples=100, deadline=None)
@given(num_classes=st.integers(2, 6), labels=st.lists(st.integers(-3, 9), min_size=1, max_size=20),
       which=st.sampled_from(["clean", "noisy"]))
def test_out_of_range_labels_are_input_errors(num_classes, labels, which):
    labels = np.array(labels, dtype=np.int64)
    valid = np.zeros_like(labels)
    clean, noisy = (labels, valid) if which == "clean" else (valid, labels)
    bad = np.any((labels < 0) | (labels >= num_classes))
    for call in (lambda: noise.compute_matrix_c(clean, noisy, num_classes),
                 lambda: noise.get_noise_types(clean, noisy, np.full((num_classes, num_classes), 0.5))):
        if bad:
            with pytest.raises(InputError, match="out of range"):
                call()
        else:
            call()
