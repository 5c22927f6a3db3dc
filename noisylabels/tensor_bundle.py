"""Reads TensorFlow 2 checkpoints (tensor bundles) with NumPy alone, without importing TensorFlow.

A checkpoint written by `tf.train.Checkpoint.save` / `tf.train.CheckpointManager` is a
prefix PREFIX (e.g. `run/ckpt-7`) with these files:

- `PREFIX.index`: a LevelDB-format table (SSTable). Its last 48 bytes are the footer: two
  block handles (varint64 offset, varint64 size: the metaindex and the index block),
  zero padding, then the magic number 0xdb4775248b80fb57 (8 bytes, little-endian). Every
  block is followed by a 5-byte trailer: a compression type byte (0 = none; TensorFlow
  writes checkpoint indexes uncompressed) and the masked CRC-32C (noisylabels.crc32c) of
  the block and that type byte, as a little-endian uint32. A block holds prefix-compressed
  entries (varint32 shared key bytes, varint32 new key bytes, varint32 value bytes, the new
  key bytes, the value), then its restart offsets (uint32 each) and their count (uint32).
  The index block maps the last key of each data block to that block's handle. The
  entries in key order: key "" holds a BundleHeaderProto (num_shards, endianness,
  version), every other key is a tensor name holding a BundleEntryProto (dtype, shape,
  shard_id, offset, size in bytes, masked CRC-32C of the bytes, slices).
- `PREFIX.data-0000K-of-0000N` (K = shard_id, N = num_shards, 5 digits each): the tensor
  bytes at [offset, offset + size). A numeric tensor is its C-order elements in the
  file's byte order (little-endian). A DT_STRING tensor is: each element's length as a
  varint64, the masked CRC-32C of the lengths (each taken as a little-endian uint32, or
  uint64 above 2^32 - 1), then the elements' bytes one after another; its entry CRC covers
  those lengths (as uint32/uint64), the 4 checksum bytes and the element bytes.
- `checkpoint` (beside the prefixes): a text protobuf naming the latest prefix,
  `model_checkpoint_path: "ckpt-7"`, and the kept ones, `all_model_checkpoint_paths: ...`.

Object-based checkpoints also store `_CHECKPOINTABLE_OBJECT_GRAPH`, a serialized
TrackableObjectGraph: node 0 is the root object (the tf.train.Checkpoint), each node lists
its children (node id, local name) and its attributes (name, e.g. VARIABLE_VALUE, and the
checkpoint key holding it). A variable reachable along several paths (a model weight is
also one of the optimizer's variables) is stored once, under ONE of its paths' keys, so a
weight is found with `variable_keys(reader, ["model/…/kernel", …])`, which walks the graph.

What is verified, as TensorFlow's reader does: the footer's magic number, every index
block's CRC-32C, the header's version and byte order, each tensor's stored size against
its dtype and shape, and each tensor's CRC-32C (and a string tensor's length checksum)
when that tensor is read. Only the tensors asked for are read (seek + read), so a damaged
tensor that is never read does not stop the others from being read. Damage raises
`DamagedCheckpointError`; what this reader does not implement (compressed index blocks,
big-endian files, partitioned tensors, dtypes without a NumPy equivalent, newer format
versions) raises `UnsupportedCheckpointError`, so a caller can fall back to TensorFlow.
"""

from __future__ import annotations

import codecs
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from noisylabels.crc32c import crc32c, unmask
from noisylabels.errors import DamagedCheckpointError, InputError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48  # two block handles of up to 20 bytes each, padding, 8-byte magic
BLOCK_TRAILER_BYTES = 5  # compression type byte + masked CRC-32C
BUNDLE_VERSION = 1  # the format version this reader implements (TensorFlow's kTensorBundleVersion)
STATE_FILE = "checkpoint"
DT_STRING = 7
# TensorFlow DataType enum value -> NumPy dtype (little-endian) of the types read here.
NUMPY_DTYPES = {
    1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 8: "<c8", 9: "<i8", 10: "?",
    17: "<u2", 18: "<c16", 19: "<f2", 22: "<u4", 23: "<u8",
}


class UnsupportedCheckpointError(InputError):
    """A valid checkpoint using a feature this reader does not implement; TensorFlow can read it."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's BundleEntryProto: where its bytes are and how to check them."""

    dtype: int  # TensorFlow DataType enum value
    shape: tuple[int, ...]
    shard_id: int
    offset: int  # bytes from the start of the data file
    size: int  # bytes
    masked_crc32c: int
    sliced: bool  # stored as slices (a partitioned variable)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the base-128 varint at buf[pos]; ValueError if cut off."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of each field of a serialized protobuf message: an int for
    varint and fixed-width fields (little-endian), bytes for length-delimited ones."""
    fields = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            if pos + width > len(buf):
                raise ValueError("truncated fixed-width field")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        else:
            raise ValueError("unsupported wire type %d" % wire_type)
        fields.append((number, value))
    return fields


def _signed(value: int) -> int:
    """An int32/int64 protobuf varint as a signed number (negatives are 10-byte varints)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto -> dims; ValueError for an unknown rank or a negative dim."""
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2:  # Dim {int64 size = 1; string name = 2}
            size = next((_signed(v) for n, v in _proto_fields(value) if n == 1), 0)
            if size < 0:
                raise ValueError("negative dimension %d" % size)
            dims.append(size)
        elif number == 3 and value:
            raise ValueError("unknown rank")
    return tuple(dims)


def _parse_entry(buf: bytes) -> TensorEntry:
    """BundleEntryProto: 1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size, 6 crc32c (fixed32), 7 slices."""
    values = {1: 0, 2: b"", 3: 0, 4: 0, 5: 0, 6: 0}
    sliced = False
    for number, value in _proto_fields(buf):
        if number == 7:
            sliced = True
        elif number in values:
            values[number] = value
    if not isinstance(values[2], bytes) or not all(isinstance(values[n], int) for n in (1, 3, 4, 5, 6)):
        raise ValueError("a field has the wrong wire type")
    return TensorEntry(dtype=values[1], shape=_parse_shape(values[2]), shard_id=_signed(values[3]),
                       offset=_signed(values[4]), size=_signed(values[5]), masked_crc32c=values[6],
                       sliced=sliced)


def _read_block(data: bytes, handle: bytes, path: str) -> bytes:
    """The contents of the table block at `handle` (varint64 offset, varint64 size), checked."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size + BLOCK_TRAILER_BYTES
    if end > len(data) - FOOTER_BYTES:
        raise DamagedCheckpointError("truncated: a block needs bytes [%d, %d) but the table has %d"
                                     % (offset, end, len(data) - FOOTER_BYTES), path=path)
    stored = unmask(int.from_bytes(data[end - 4:end], "little"))
    if crc32c(memoryview(data)[offset:offset + size + 1]) != stored:
        raise DamagedCheckpointError("block checksum mismatch at byte %d (corrupt file)" % offset, path=path)
    if data[offset + size] != 0:
        if data[offset + size] in (1, 2):  # Snappy or zlib, which TensorFlow can read
            raise UnsupportedCheckpointError("compressed index blocks are not supported here", path=path)
        raise DamagedCheckpointError("bad block type %d" % data[offset + size], path=path)
    return data[offset:offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """(key, value) of each entry of a table block, in order; ValueError if malformed."""
    if len(block) < 4:
        raise ValueError("block shorter than its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    if num_restarts > (len(block) - 4) // 4:
        raise ValueError("bad restart count")
    limit = len(block) - 4 * (num_restarts + 1)
    entries = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_size, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_size > limit:
            raise ValueError("bad entry at byte %d" % pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_size]))
        pos += value_size
    return entries


def read_table(path: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable file, in key order, with its footer and block CRCs checked."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DamagedCheckpointError("missing checkpoint index file", path=path) from None
    if len(data) < FOOTER_BYTES:
        raise DamagedCheckpointError("truncated: %d bytes, shorter than a table footer" % len(data), path=path)
    if int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise DamagedCheckpointError("bad magic number: not a checkpoint index (or truncated)", path=path)
    try:
        footer = data[-FOOTER_BYTES:]
        _, pos = _varint(footer, 0)
        _, pos = _varint(footer, pos)  # the metaindex block (unused, as in TensorFlow)
        index_handle = footer[pos:]
        entries = []
        for _, handle in _block_entries(_read_block(data, index_handle, path)):
            entries += _block_entries(_read_block(data, handle, path))
    except ValueError as err:
        raise DamagedCheckpointError("corrupt table (%s)" % err, path=path) from None
    return entries


def _packed_varints(buf: bytes) -> list[int]:
    """The values of a packed repeated varint field."""
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def _check_header(value: bytes, path: str) -> int:
    """Checks a BundleHeaderProto (1 num_shards, 2 endianness: 0 little / 1 big, 3 VersionDef
    {1 producer, 2 min_consumer, 3 bad_consumers}) as TensorFlow does; returns num_shards."""
    header = {1: 0, 2: 0}
    min_consumer, bad_consumers = 0, []
    try:
        for number, field in _proto_fields(value):
            if number in header:
                header[number] = field
            elif number == 3:
                for version_number, version_field in _proto_fields(field):
                    if version_number == 2:
                        min_consumer = _signed(version_field)
                    elif version_number == 3:  # repeated int32, plain or packed
                        bad_consumers += ([version_field] if isinstance(version_field, int)
                                          else _packed_varints(version_field))
    except ValueError as err:
        raise DamagedCheckpointError("unparsable header entry (%s)" % err, path=path) from None
    if not all(isinstance(v, int) for v in header.values()):
        raise DamagedCheckpointError("unparsable header entry (a field has the wrong wire type)", path=path)
    if header[2] != 0:
        raise UnsupportedCheckpointError("big-endian checkpoint files are not supported here", path=path)
    if min_consumer > BUNDLE_VERSION or BUNDLE_VERSION in bad_consumers:
        raise UnsupportedCheckpointError("written in a newer checkpoint format (needs reader version %d)"
                                         % min_consumer, path=path)
    return _signed(header[1])


def data_filename(prefix: str, shard_id: int, num_shards: int) -> str:
    """The data file of shard `shard_id`: PREFIX.data-0000K-of-0000N."""
    return "%s.data-%05d-of-%05d" % (prefix, shard_id, num_shards)


def _string_elements(raw: bytes, count: int, path: str, name: str) -> tuple[list[bytes], int]:
    """Decodes a DT_STRING tensor's bytes (module docstring) into `count` elements; checks
    its length checksum. Returns (elements, CRC-32C of the bytes as TensorFlow computes it)."""
    lengths = []
    pos = 0
    try:
        for _ in range(count):
            length, pos = _varint(raw, pos)
            lengths.append(length)
    except ValueError:
        raise DamagedCheckpointError("tensor %r: truncated string lengths" % name, path=path) from None
    crc = crc32c(b"".join(n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little") for n in lengths))
    stored = raw[pos:pos + 4]
    if len(stored) < 4 or unmask(int.from_bytes(stored, "little")) != crc:
        raise DamagedCheckpointError("tensor %r: string length checksum mismatch" % name, path=path)
    start = pos + 4
    if start + sum(lengths) != len(raw):
        raise DamagedCheckpointError("tensor %r: string lengths do not add up to its size" % name, path=path)
    crc = crc32c(memoryview(raw)[pos:], crc)
    ends = np.cumsum([start] + lengths)
    return [raw[a:b] for a, b in zip(ends[:-1], ends[1:])], crc


class CheckpointReader:
    """The tensors of one checkpoint PREFIX (see the module docstring), read on demand.

    Opening reads and checks `PREFIX.index` only; `get_tensor` reads one tensor's bytes
    from its data file. Names are TensorFlow's keys, e.g. "model/.../.ATTRIBUTES/VARIABLE_VALUE".
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = str(prefix)
        self.index_path = self.prefix + ".index"
        entries = read_table(self.index_path)
        if not entries or entries[0][0] != b"":
            raise DamagedCheckpointError("no header entry (corrupt file)", path=self.index_path)
        self.num_shards = _check_header(entries[0][1], self.index_path)
        # Keys of stored slices (TensorFlow encodes them starting with a 0 byte) are not names.
        self._raw = {key.decode("utf-8", "surrogateescape"): value for key, value in entries[1:]
                     if not key.startswith(b"\x00")}

    def names(self) -> list[str]:
        """Every tensor name, sorted (as tf.train.list_variables lists them)."""
        return sorted(self._raw)

    def has_tensor(self, name: str) -> bool:
        return name in self._raw

    def entry(self, name: str) -> TensorEntry:
        """The BundleEntryProto of `name`; KeyError if absent, DamagedCheckpointError if unparsable."""
        try:
            return _parse_entry(self._raw[name])
        except ValueError as err:
            raise DamagedCheckpointError("tensor %r: unparsable entry (%s)" % (name, err),
                                         path=self.index_path) from None

    def dtype_and_shape(self, name: str) -> tuple[np.dtype, tuple[int, ...]]:
        """(NumPy dtype, shape) of `name`; strings have dtype object (elements are bytes)."""
        entry = self.entry(name)
        return self._numpy_dtype(name, entry), entry.shape

    def _numpy_dtype(self, name: str, entry: TensorEntry) -> np.dtype:
        if entry.dtype == DT_STRING:
            return np.dtype(object)
        if entry.dtype not in NUMPY_DTYPES:
            raise UnsupportedCheckpointError("tensor %r: dtype %d is not supported here" % (name, entry.dtype),
                                             path=self.index_path)
        return np.dtype(NUMPY_DTYPES[entry.dtype])

    def get_tensor(self, name: str) -> np.ndarray | bytes:
        """The value of `name` as tf.train.load_checkpoint(prefix).get_tensor gives it: an array
        (0-d for a scalar) of the stored dtype in native byte order, object arrays of bytes for
        strings, and a scalar string as `bytes`. Its size and CRC-32C are checked.
        KeyError if there is no such tensor."""
        entry = self.entry(name)
        dtype = self._numpy_dtype(name, entry)
        if entry.sliced:
            raise UnsupportedCheckpointError("tensor %r is stored in slices (partitioned); not supported here"
                                             % name, path=self.index_path)
        count = math.prod(entry.shape)
        if entry.dtype == DT_STRING:
            size_ok = entry.size >= count  # at least one length byte per element
        else:
            size_ok = entry.size == count * dtype.itemsize
        if not size_ok:
            raise DamagedCheckpointError("tensor %r: stored size %d bytes does not fit shape %s"
                                         % (name, entry.size, list(entry.shape)), path=self.index_path)
        if not 0 <= entry.shard_id < self.num_shards or entry.offset < 0:
            raise DamagedCheckpointError("tensor %r: bad shard %d or offset %d" % (name, entry.shard_id, entry.offset),
                                         path=self.index_path)
        path = data_filename(self.prefix, entry.shard_id, self.num_shards)
        raw = _read_range(path, entry.offset, entry.size, name)
        if entry.dtype == DT_STRING:
            elements, crc = _string_elements(bytes(raw), count, path, name) if entry.size else ([], 0)
        else:
            crc = crc32c(raw)
        if crc != unmask(entry.masked_crc32c):
            raise DamagedCheckpointError("tensor %r: checksum mismatch (corrupt data)" % name, path=path)
        if entry.dtype != DT_STRING:
            return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=False)
        if not entry.shape:
            return elements[0]
        array = np.empty(count, dtype=object)
        array[:] = elements
        return array.reshape(entry.shape)


OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _object_graph(serialized: bytes) -> list[tuple[dict[str, int], dict[str, str]]]:
    """The nodes of a serialized TrackableObjectGraph: per node, ({child local name: node
    id}, {attribute name: checkpoint key}). ValueError if it does not parse."""
    nodes = []
    for number, node in _proto_fields(serialized):
        if number != 1 or not isinstance(node, bytes):
            continue
        children, attributes = {}, {}
        for field, value in _proto_fields(node):
            if field not in (1, 2) or not isinstance(value, bytes):
                continue  # slot variables, registered savers, ...
            parts = dict(_proto_fields(value))
            if field == 1:  # ObjectReference: node_id = 1, local_name = 2
                children[parts.get(2, b"").decode("utf-8")] = int(parts.get(1, 0))
            else:  # SerializedTensor: name = 1, full_name = 2, checkpoint_key = 3
                attributes[parts.get(1, b"").decode("utf-8")] = parts.get(3, b"").decode("utf-8")
        nodes.append((children, attributes))
    return nodes


def variable_keys(reader, object_paths: list[str], path: str = "") -> dict[str, str | None]:
    """The checkpoint keys under which the variables at `object_paths` are stored (the
    object graph is read and parsed once for all of them).

    Args:
      reader: a CheckpointReader, or anything with has_tensor / get_tensor (TensorFlow's).
      object_paths: local names from the root object joined by "/", e.g.
        "model/query_encoder/hidden/_kernel".
      path: the checkpoint's name, for messages.

    Returns:
      {object path: key (e.g. "optimizer/_trainable_variables/3/.ATTRIBUTES/VARIABLE_VALUE"),
      or None when the graph has no such object or it holds no value}. Without an object
      graph (a name-based checkpoint) a key is the path's own,
      OBJECT_PATH + "/.ATTRIBUTES/VARIABLE_VALUE", when present.

    Raises:
      DamagedCheckpointError: an object graph that does not parse.
    """
    if not reader.has_tensor(OBJECT_GRAPH_KEY):
        keys = {p: p + "/.ATTRIBUTES/VARIABLE_VALUE" for p in object_paths}
        return {p: key if reader.has_tensor(key) else None for p, key in keys.items()}
    try:
        nodes = _object_graph(reader.get_tensor(OBJECT_GRAPH_KEY))
        keys = {p: _walk(nodes, p) for p in object_paths}
    except (ValueError, IndexError, UnicodeDecodeError) as err:
        raise DamagedCheckpointError("unparsable object graph (%s)" % err, path=path) from None
    return {p: key if key and reader.has_tensor(key) else None for p, key in keys.items()}


def _walk(nodes, object_path):
    """The VARIABLE_VALUE key of the node at `object_path` from the root (node 0), or None."""
    node = 0
    for name in object_path.split("/"):
        node = nodes[node][0].get(name)
        if node is None:
            return None
    return nodes[node][1].get("VARIABLE_VALUE")


def variable_key(reader, object_path: str, path: str = "") -> str | None:
    """`variable_keys` for one object path."""
    return variable_keys(reader, [object_path], path)[object_path]


def _read_range(path: str, offset: int, size: int, name: str) -> bytearray:
    """Bytes [offset, offset + size) of a data file; DamagedCheckpointError if missing or short."""
    buffer = bytearray(size)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            got = f.readinto(buffer)
    except FileNotFoundError:
        raise DamagedCheckpointError("missing checkpoint data file", path=path) from None
    if got != size:
        raise DamagedCheckpointError("truncated: tensor %r needs bytes [%d, %d) but the file ends at %d"
                                     % (name, offset, offset + size, offset + got), path=path)
    return buffer


_STATE_LINE = re.compile(r'\s*(\w+)\s*:\s*(.*?)\s*$')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'')
_STATE_FIELDS = ("model_checkpoint_path", "all_model_checkpoint_paths", "all_model_checkpoint_timestamps",
                 "last_preserved_timestamp")


def _state_value(text: str, path: str, line: int, field: str) -> str:
    """A text-format string value: one or more adjacent quoted pieces with C escapes."""
    pieces = []
    pos = 0
    while pos < len(text):
        match = _QUOTED.match(text, pos)
        if not match:
            raise InputError("malformed value %r" % text, path=path, line=line, field=field)
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        pieces.append(codecs.escape_decode(quoted.encode("utf-8"))[0])
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return b"".join(pieces).decode("utf-8", "surrogateescape")


def read_checkpoint_state(directory: str) -> str | None:
    """`model_checkpoint_path` of DIRECTORY/checkpoint (made absolute-or-joined with
    DIRECTORY if relative); None if there is no state file. InputError if it is malformed."""
    path = os.path.join(directory, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError("unreadable checkpoint state file (%s)" % err, path=path) from None
    latest = None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _STATE_LINE.match(line)
        if not match or match.group(1) not in _STATE_FIELDS:
            raise InputError("malformed line %r" % line, path=path, line=number)
        if match.group(1) == "model_checkpoint_path":
            latest = _state_value(match.group(2), path, number, match.group(1))
        elif match.group(1) == "all_model_checkpoint_paths":
            _state_value(match.group(2), path, number, match.group(1))
    if not latest:
        raise InputError("no model_checkpoint_path", path=path)
    return latest if os.path.isabs(latest) else os.path.join(directory, latest)


def latest_checkpoint(directory: str) -> str | None:
    """The latest checkpoint prefix in `directory`, as tf.train.latest_checkpoint answers: the
    state file's model_checkpoint_path (joined with `directory` if relative), or None when
    there is no state file or no PREFIX.index. A malformed state file raises InputError
    (TensorFlow logs it and answers None)."""
    prefix = read_checkpoint_state(directory)
    if prefix is None or not os.path.exists(prefix + ".index"):
        return None
    return prefix
