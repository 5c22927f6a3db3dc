"""Streaming reader for CleanNet's class lists and tab-separated feature files (docs/originals.md#cleannet-files-and-formats).

Class list: a text file with one class name per line; the class id is the 0-based line
number. A CR before the newline is removed and trailing empty lines are allowed; an empty
file, an empty name before the last name, a name with a tab, or a duplicate name is an
`InputError` naming the line.

TSV files: one row per line, columns separated by tabs, the LAST column is the feature
vector: h decimal numbers joined by ','. The layout is chosen per row by its column count:

    kind       columns
    verified   key, class_name, vlabel, feature          (4)
               key, url, class_name, vlabel, feature     (5)
    all        key, class_name, feature                  (3)
               key, url, class_name, feature             (4)
    ref        class_name, ref_id, feature               (3)

vlabel is 1 (label correct), 0 (label wrong) or -1 (invalid; the reader keeps such rows
and the caller drops and counts them). ref_id is a non-negative integer. Lines may end in
LF or CRLF, a UTF-8 byte-order mark is ignored, and empty lines are allowed only at the
end of the file. A file without rows is an `InputError`. A line longer than any valid row
can be (`max_line_bytes`: 64 bytes per value plus 64 KiB for the other columns) is refused
before it is read whole, so memory stays bounded by the chunk and --img_dim.

Each line is split once, at its LAST tab, into metadata and the feature string, so keys
and URLs may contain commas. The feature strings of a chunk of rows are parsed in place,
in one call (cleannet/feature_text.py: pandas' C reader, in this process).
Only when that fails (a ragged row, a non-number, nan/inf) is the chunk re-parsed line by
line to report the first bad line:

    PATH:LINE: feature: value 3 ('abc') is not a number
    PATH:LINE: feature: 2047 values, expected 2048 (from --img_dim)
    PATH:LINE: feature: nan/inf at value 17
    PATH:LINE: expected 4 or 5 tab-separated columns, found 3
    PATH:LINE: class_name: unknown class 'foo' (not in CLASSES)

Values are counted from 1 ("value 3" is the third number of the row).
"""

import codecs
import dataclasses
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import List, Optional

import numpy as np

from cleannet import feature_text
from noisylabels.errors import InputError
from noisylabels.fileio import iter_text_lines, open_input
from noisylabels.unique_keys import UniqueKeys

# Allowed column counts per kind of TSV file.
COLUMNS = {"verified": (4, 5), "all": (3, 4), "ref": (3,)}

VLABELS = {b"1": 1, b"0": 0, b"-1": -1}

# A plain decimal number, as the fast parser reads it (surrounding blanks allowed).
_NUMBER = re.compile(rb"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_REF_ID = re.compile(rb"\d+")


@dataclasses.dataclass
class TsvChunk:
    """A block of consecutive rows of a TSV file.

    Attributes:
      first_line: 1-based line number of the chunk's first row.
      line_numbers: int64 [n], the 1-based line number of every row.
      keys: list of n str (verified, all), None for ref.
      urls: list of n (str or None when the row has no url column) (verified, all);
        None for ref.
      class_names: list of n str.
      class_ids: int32 [n], index of the class name in the class list.
      vlabels: int8 [n] of 1, 0 or -1 (verified); None otherwise. Rows with -1 are kept
        here; the caller drops them.
      ref_ids: int32 [n] (ref); None otherwise. Not range-checked here.
      features: float32 [n, h], all finite.
    """

    first_line: int
    line_numbers: np.ndarray
    keys: Optional[List[str]]
    urls: Optional[List[Optional[str]]]
    class_names: List[str]
    class_ids: np.ndarray
    vlabels: Optional[np.ndarray]
    ref_ids: Optional[np.ndarray]
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.line_numbers)


def read_class_list(path: str | os.PathLike) -> List[str]:
    """Reads a class list file (one name per line).

    Args:
      path: the class list.

    Returns:
      list of str; the class id of a name is its index.

    Raises:
      InputError: missing or empty file, empty or duplicate name, a tab in a name.
    """
    path = os.fspath(path)
    names: List[str] = []
    first_line_of = {}
    first_blank = None
    for line_no, name in iter_text_lines(path):  # the shared line-length bound, streamed
        if not name.strip():
            first_blank = first_blank or line_no
            continue
        if first_blank is not None:
            raise InputError("empty class name (empty lines are allowed only at the end)",
                             path=path, line=first_blank, field="class_name")
        if "\t" in name:
            raise InputError("class name %r contains a tab" % name, path=path, line=line_no,
                             field="class_name")
        if name in first_line_of:
            raise InputError("duplicate class name %r (first on line %d)"
                             % (name, first_line_of[name]), path=path, line=line_no,
                             field="class_name")
        first_line_of[name] = line_no
        names.append(name)
    if not names:
        raise InputError("empty class list (no class names)", path=path)
    return names


def make_class_to_id(class_names: Sequence[str]) -> dict[str, int]:
    """Returns {class name: class id} for a list from `read_class_list`."""
    return {name: class_id for class_id, name in enumerate(class_names)}


def iter_tsv_chunks(path: str | os.PathLike, kind: str, class_to_id: Mapping[str, int],
                    img_dim: Optional[int] = None, chunk_rows: int = 4096,
                    class_list_path: Optional[str] = None) -> Iterator[TsvChunk]:
    """Streams a TSV file as `TsvChunk`s of up to `chunk_rows` rows, in file order.

    Memory is bounded by one chunk: the file is never read whole.

    Args:
      path: the TSV file.
      kind: "verified", "all" or "ref" (see the module docstring).
      class_to_id: dict {class name: class id}.
      img_dim: the feature dimension h every row must have; None: the first row fixes it.
      chunk_rows: rows per chunk (positive).
      class_list_path: the class list's path, only to name it in "unknown class" errors.

    Yields:
      TsvChunk, each with at least one row.

    Raises:
      InputError: naming the file, the line and the field of the first bad row, or an
        empty file (no rows).
    """
    if kind not in COLUMNS:
        raise ValueError("kind must be one of %s, got %r" % (sorted(COLUMNS), kind))
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive, got %r" % chunk_rows)
    if img_dim is not None and img_dim < 1:
        raise ValueError("img_dim must be positive or None, got %r" % img_dim)
    path = os.fspath(path)
    parser = _ChunkParser(path, kind, class_to_id, img_dim, class_list_path)
    rows = 0
    for block in _iter_line_blocks(path, chunk_rows, lambda: max_line_bytes(parser.dim)):
        chunk = parser.parse(block)
        rows += len(chunk)
        yield chunk
    if rows == 0:
        raise InputError("no rows (the file is empty)", path=path)


@dataclasses.dataclass
class _LineBlock:
    """Up to chunk_rows consecutive non-empty lines of a file, in one buffer.

    Attributes:
      data: the bytes holding the lines (owned by the receiver, which may change it).
      starts, ends: offsets into data where line i begins (after a byte-order mark) and
        ends (its CR / LF excluded).
      numbers: the 1-based line number of each line.
    """

    data: bytearray
    starts: List[int]
    ends: List[int]
    numbers: List[int]


def _iter_line_blocks(path, chunk_rows, line_limit, read_bytes=1 << 20):
    """Yields `_LineBlock`s of up to chunk_rows non-empty lines, reading `read_bytes` at a time.

    line_limit() gives the longest line allowed (`max_line_bytes`); it is asked for each
    read, so it tightens once the first rows fixed the feature dimension. A longer line is
    an InputError raised once that much of it is read, so memory stays bounded by the
    block, one read and a valid row.
    """
    with open_input(path) as f:
        buf = bytearray()
        pos = line_no = 0  # pos: where the next line starts in buf
        first_empty = None  # first empty line since the last row
        starts, ends, numbers = [], [], []
        limit = line_limit()
        while True:
            newline = buf.find(b"\n", pos)
            if newline < 0:
                if len(buf) - pos >= limit:
                    _raise_line_too_long(path, line_no + 1, limit)
                block = f.read(read_bytes)
                limit = line_limit()
                if block:
                    buf += block
                    continue
                if pos >= len(buf):
                    break
                newline = len(buf)  # a last line without a line end
            line_no += 1
            if newline - pos >= limit:
                _raise_line_too_long(path, line_no, limit)
            start, end = pos, newline
            pos = newline + 1
            while end > start and buf[end - 1] in b"\r\n":
                end -= 1
            if line_no == 1 and buf.startswith(codecs.BOM_UTF8, start, end):
                start += len(codecs.BOM_UTF8)
            if _is_blank(buf, start, end):
                first_empty = first_empty or line_no
                continue
            if first_empty is not None:
                raise InputError("empty line (empty lines are allowed only at the end of the "
                                 "file)", path=path, line=first_empty)
            starts.append(start)
            ends.append(end)
            numbers.append(line_no)
            if len(numbers) == chunk_rows:
                rest = buf[pos:]
                del buf[pos:]
                yield _LineBlock(buf, starts, ends, numbers)
                buf, pos, limit = rest, 0, line_limit()
                starts, ends, numbers = [], [], []
        if numbers:
            yield _LineBlock(buf, starts, ends, numbers)


def _is_blank(buf, start, end):
    """True if buf[start:end] is empty or only ASCII white space (copies only lines that
    begin with a blank)."""
    return end == start or (buf[start] in b" \t\r\n\x0b\x0c" and not buf[start:end].strip())


# The longest line a valid row can be: a value is at most MAX_VALUE_BYTES bytes with its comma
# ("-1.2345678901234567e-308," is 25), key, url, class name and vlabel at most MAX_META_BYTES.
MAX_VALUE_BYTES = 64
MAX_META_BYTES = 1 << 16
# The feature dimension assumed for that bound until --img_dim or the first rows fix it.
MAX_DIM_WITHOUT_IMG_DIM = 1 << 16


def max_line_bytes(img_dim: Optional[int]) -> int:
    """The longest line (bytes, line end included) a valid row of `img_dim` values can be."""
    dim = img_dim if img_dim is not None else MAX_DIM_WITHOUT_IMG_DIM
    return dim * MAX_VALUE_BYTES + MAX_META_BYTES


def _raise_line_too_long(path, line_no, limit):
    raise InputError("line is longer than any valid row can be (more than %d bytes: at most %d bytes per "
                     "feature value and %d for the other columns); it was not read to its end"
                     % (limit, MAX_VALUE_BYTES, MAX_META_BYTES), path=path, line=line_no)


@dataclasses.dataclass
class _FeatureRows:
    """Where the feature text of each row of a block lies: data[feature_starts[i]:ends[i]];
    the row itself begins at starts[i]."""

    data: bytearray
    starts: List[int]
    feature_starts: List[int]
    ends: List[int]
    numbers: List[int]

    def first(self, n):
        """The first n rows."""
        return _FeatureRows(self.data, self.starts[:n], self.feature_starts[:n], self.ends[:n],
                            self.numbers[:n])

    def first_row_width(self):
        """Values in the first row's feature text (commas + 1)."""
        return self.data.count(b",", self.feature_starts[0], self.ends[0]) + 1

    def feature_strings(self):
        """The feature text of each row, as bytes."""
        return [bytes(self.data[a:b]) for a, b in zip(self.feature_starts, self.ends)]


class _ChunkParser:
    """Parses blocks of lines of one file; remembers the feature dimension across blocks."""

    def __init__(self, path, kind, class_to_id, img_dim, class_list_path):
        self.path = path
        self.kind = kind
        self.class_to_id = class_to_id
        self.class_list_path = class_list_path
        self.dim = img_dim
        self.dim_source = "from --img_dim" if img_dim is not None else None
        # The all-samples TSV's keys are joined on by later steps (make_cleaned_list, the
        # review page, merge_queue): a duplicate is refused here, by its first reader.
        self.unique_keys = UniqueKeys(path) if kind == "all" else None

    def error(self, message, line, field=None):
        return InputError(message, path=self.path, line=line, field=field)

    def parse(self, block):
        """TsvChunk from a `_LineBlock` (whose data it overwrites)."""
        data, numbers = block.data, block.numbers
        metas, feature_starts = [], []
        for start, end in zip(block.starts, block.ends):
            tab = data.rfind(b"\t", start, end)
            metas.append(bytes(data[start:tab]) if tab >= 0 else None)
            feature_starts.append(tab + 1 if tab >= 0 else start)
        rows = _FeatureRows(data, block.starts, feature_starts, block.ends, numbers)

        kind = self.kind
        keys = [] if kind != "ref" else None
        urls = [] if kind != "ref" else None
        class_names, class_ids = [], []
        vlabels = [] if kind == "verified" else None
        ref_ids = [] if kind == "ref" else None
        for i, (meta, line_no) in enumerate(zip(metas, numbers)):
            try:
                fields = self._split_meta(meta, line_no)
                if kind == "ref":
                    name_field, ref_id = fields
                    ref_ids.append(self._ref_id(ref_id, line_no))
                else:
                    if kind == "verified":
                        fields, vlabel = fields[:-1], fields[-1]
                    keys.append(self._text(fields[0], line_no, "key"))
                    urls.append(self._text(fields[1], line_no, "url") if len(fields) == 3 else None)
                    name_field = fields[-1]
                    if kind == "verified":
                        vlabels.append(self._vlabel(vlabel, line_no))
                name, class_id = self._class(name_field, line_no)
            except InputError as err:
                # Report a bad feature on an earlier line of the chunk first.
                if i > 0:
                    self._parse_features(rows.first(i))
                hint = self._other_layout_hint(meta)
                if hint:
                    raise InputError(err.message + hint, path=err.path, line=err.line, field=err.field) from None
                raise
            if self.unique_keys is not None:
                if i > 0 and keys[-1] in self.unique_keys:  # a bad feature on an earlier line comes first
                    self._parse_features(rows.first(i))
                self.unique_keys.add(keys[-1], line_no)
            class_names.append(name)
            class_ids.append(class_id)

        return TsvChunk(
            first_line=numbers[0],
            line_numbers=np.asarray(numbers, dtype=np.int64),
            keys=keys,
            urls=urls,
            class_names=class_names,
            class_ids=np.asarray(class_ids, dtype=np.int32),
            vlabels=None if vlabels is None else np.asarray(vlabels, dtype=np.int8),
            ref_ids=None if ref_ids is None else np.asarray(ref_ids, dtype=np.int32),
            features=self._parse_features(rows),
        )

    def _other_layout_hint(self, meta):
        """For a row that fails as this layout but fits the other one (a verified TSV given
        where an all-samples TSV is expected, or the reverse): the sentence saying so."""
        fields = meta.split(b"\t") if meta is not None else []
        known = lambda value: value.decode("utf-8", "replace") in self.class_to_id  # noqa: E731
        if self.kind == "all" and len(fields) + 1 in COLUMNS["verified"] and fields[-1].strip() in VLABELS \
                and known(fields[-2]):
            return ("; this row looks like a verified TSV (key, [url,] class_name, vlabel, feature) but an "
                    "all-samples TSV (key, [url,] class_name, feature) is expected here")
        if self.kind == "verified" and len(fields) + 1 in COLUMNS["all"] and known(fields[-1]) \
                and fields[-1].strip() not in VLABELS:
            return ("; this row looks like an all-samples TSV (key, [url,] class_name, feature) but a "
                    "verified TSV (key, [url,] class_name, vlabel, feature) is expected here")
        return ""

    def _split_meta(self, meta, line_no):
        """Returns the metadata fields (all columns but the feature) of a row."""
        fields = meta.split(b"\t") if meta is not None else []
        allowed = COLUMNS[self.kind]
        if len(fields) + 1 not in allowed:
            expected = " or ".join(str(n) for n in allowed)
            raise self.error("expected %s tab-separated columns, found %d"
                             % (expected, len(fields) + 1), line_no)
        return fields

    def _text(self, value, line_no, field):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("not valid UTF-8", line_no, field) from None

    def _class(self, value, line_no):
        name = self._text(value, line_no, "class_name")
        class_id = self.class_to_id.get(name)
        if class_id is None:
            raise self.error("unknown class %r (not in %s)"
                             % (name, self.class_list_path or "the class list"),
                             line_no, "class_name")
        return name, class_id

    def _vlabel(self, value, line_no):
        vlabel = VLABELS.get(value.strip())
        if vlabel is None:
            raise self.error("expected 1, 0 or -1, found %r" % _shorten(value), line_no, "vlabel")
        return vlabel

    def _ref_id(self, value, line_no):
        value = value.strip()
        if not _REF_ID.fullmatch(value) or int(value) > np.iinfo(np.int32).max:
            raise self.error("expected a non-negative integer, found %r" % _shorten(value),
                             line_no, "ref_id")
        return int(value)

    def _parse_features(self, rows):
        """float32 [n, h] from `_FeatureRows`; the first row fixes h if not yet known."""
        width = self.dim if self.dim is not None else rows.first_row_width()
        array = feature_text.parse_feature_rows(rows.data, rows.starts, rows.feature_starts,
                                                rows.ends, width)
        if array is None:
            array = self._parse_features_slow(rows.feature_strings(), rows.numbers)
        if self.dim is None:
            self.dim = array.shape[1]
            self.dim_source = "from line %d" % rows.numbers[0]
        return array

    def _parse_features_slow(self, feature_strings, numbers):
        """Line-by-line parse that raises InputError at the first bad value."""
        rows = []
        dim, dim_source = self.dim, self.dim_source
        for feature, line_no in zip(feature_strings, numbers):
            tokens = feature.split(b",") if feature.strip() else []
            if dim is None:
                if not tokens:
                    raise self.error("no values", line_no, "feature")
                dim, dim_source = len(tokens), "from line %d" % line_no
            if len(tokens) != dim:
                raise self.error("%d values, expected %d (%s)" % (len(tokens), dim, dim_source),
                                 line_no, "feature")
            rows.append([self._value(token, k, line_no) for k, token in enumerate(tokens, 1)])
        return np.array(rows, dtype=np.float32).reshape(len(feature_strings), dim)

    def _value(self, token, index, line_no):
        if _NUMBER.fullmatch(token):
            value = float(token)
            with np.errstate(over="ignore"):
                if not np.isfinite(np.float32(value)):
                    raise self.error("value %d (%r) is out of the float32 range"
                                     % (index, _shorten(token)), line_no, "feature")
            return value
        try:
            value = float(token)
        except ValueError:
            value = None
        if value is not None and not math.isfinite(value):
            raise self.error("nan/inf at value %d" % index, line_no, "feature")
        raise self.error("value %d (%r) is not a number" % (index, _shorten(token)),
                         line_no, "feature")


def _shorten(value, limit=40):
    """A bytes field as str for messages, cut to `limit` characters."""
    text = value.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."
