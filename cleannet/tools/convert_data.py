"""Converts CleanNet's TSV feature files to .npy arrays (docs/originals.md#cleannet-files-and-formats).

    python util/convert_data.py --split=train --class_list=classes.txt \\
        --data_path=train.tsv --output_dir=data/            # -> data/train.npy

Splits and outputs (float32, no pickle), h = feature dimension:
  train, val  verified TSV (key, [url,] class_name, vlabel, feature) -> {split}.npy
              [N, h+2] = feature, class id, vlabel. Rows with vlabel -1 (invalid) are
              skipped; positives, negatives and invalid rows are counted and logged.
  all         all-samples TSV (key, [url,] class_name, feature) -> all.npy [N, h+1] =
              feature, class id. OUR NON-PICKLED LAYOUT: rows are grouped by class in
              ascending class id and keep their input order within a class (a stable
              sort by class id). The original wrote a pickled ragged object array
              instead; a pickle can run code when loaded, so it is not written any more
              (cleannet.datafiles.load_all still reads it with --allow_pickle).
  ref         reference TSV (class_name, ref_id, feature) -> ref.npy
              [num_class, num_ref, h]; ref[c, r] is the row of class c with ref_id r.
              Every (class, ref_id) with ref_id in [0, num_ref) must appear exactly once.

The class id of a row is the 0-based line of its class name in --class_list. The TSV is
streamed in chunks of --chunk_rows rows (util/tsv_reader.py) and the output is written
chunk by chunk, so memory stays at about one chunk (plus, for `all`, 4 bytes per row
for the grouping) whatever the file size. Output goes to a temporary file that is renamed
into place only when the whole input was read without error: a bad input leaves no
output file.
"""

from __future__ import annotations

import os


import dataclasses
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import numpy as np
from absl import flags
from absl import logging

from noisylabels import fileio
from cleannet import tsv_reader
from noisylabels.progress import Progress
from noisylabels.errors import InputError, check_flag
from noisylabels.flagutil import define_num_ref, run_tool

SPLITS = ("train", "val", "all", "ref")
DEFAULT_CHUNK_ROWS = 4096


@dataclasses.dataclass
class ConvertResult:
    """What a conversion wrote.

    Attributes:
      output_path: the .npy file written.
      rows: rows in the output (for ref: num_class * num_ref).
      img_dim: the feature dimension h.
      positives, negatives, invalid: verified rows with vlabel 1, 0, -1 (train / val only;
        invalid rows are not written).
    """

    output_path: str
    rows: int
    img_dim: int
    positives: int = 0
    negatives: int = 0
    invalid: int = 0


class NpyRowWriter:
    """Writes a float32 [N, width] .npy file block by block into an open binary file.

    The header is written first with N = 0 and rewritten with the final N by `finish`;
    NumPy pads the header so that its length does not depend on N.
    """

    def __init__(self, f: BinaryIO, width: int) -> None:
        self._f = f
        self.width = width
        self.rows = 0
        self._header_length = self._write_header()

    def _write_header(self):
        self._f.seek(0)
        np.lib.format.write_array_header_1_0(
            self._f, {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.width)})
        return self._f.tell()

    def append(self, block: np.ndarray) -> None:
        """Appends float32 [n, width] rows."""
        block = np.ascontiguousarray(block, dtype="<f4")
        if block.ndim != 2 or block.shape[1] != self.width:
            raise ValueError("expected [n, %d] rows, got %s" % (self.width, block.shape))
        self._f.write(block.data)
        self.rows += len(block)

    def finish(self) -> None:
        """Writes the final row count into the header."""
        end = self._f.tell()
        if self._write_header() != self._header_length:
            raise RuntimeError("the .npy header changed length")
        self._f.seek(end)


def _progress(tsv_path):
    """Progress in rows read (the total is unknown: count and rate, no ETA)."""
    return Progress(total=None, unit="rows", desc="reading %s" % os.path.basename(os.fspath(tsv_path)))


def convert_verified(tsv_path: str | os.PathLike, class_names: Sequence[str], output_path: str | os.PathLike,
                     img_dim: int | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                     class_list_path: str | None = None) -> ConvertResult:
    """Verified TSV -> [N, h+2] float32 .npy (feature, class id, vlabel); drops vlabel -1."""
    class_to_id = tsv_reader.make_class_to_id(class_names)
    with _progress(tsv_path) as progress:
        chunks = tsv_reader.iter_tsv_chunks(tsv_path, "verified", class_to_id, img_dim, chunk_rows,
                                            class_list_path)
        return write_verified_npy(_counted(chunks, progress), output_path)


def _counted(chunks, progress):
    """Yields the chunks, adding their rows to `progress`."""
    for chunk in chunks:
        progress.update(len(chunk))
        yield chunk


def write_verified_npy(chunks: Iterable[tsv_reader.TsvChunk], output_path: str | os.PathLike) -> ConvertResult:
    """Verified rows -> [N, h+2] float32 .npy (feature, class id, vlabel), written atomically.

    Args:
      chunks: iterable of tsv_reader.TsvChunk (features, class_ids, vlabels used), in order.
      output_path: the .npy file. Rows with vlabel -1 are dropped and counted.

    Returns:
      ConvertResult.
    """
    positives = negatives = invalid = 0
    with fileio.atomic_open(output_path, "wb") as f:
        writer = None
        for chunk in chunks:
            h = chunk.features.shape[1]
            if writer is None:
                writer = NpyRowWriter(f, h + 2)
            positives += int(np.count_nonzero(chunk.vlabels == 1))
            negatives += int(np.count_nonzero(chunk.vlabels == 0))
            invalid += int(np.count_nonzero(chunk.vlabels == -1))
            keep = chunk.vlabels >= 0
            block = np.empty((int(keep.sum()), h + 2), dtype=np.float32)
            block[:, :h] = chunk.features[keep]
            block[:, h] = chunk.class_ids[keep]
            block[:, h + 1] = chunk.vlabels[keep]
            writer.append(block)
        if writer is None:
            raise InputError("no rows to write", path=output_path)
        writer.finish()
    logging.info("%s: %d rows written: %d positives (vlabel 1), %d negatives (vlabel 0); "
                 "%d invalid rows (vlabel -1) skipped", output_path, writer.rows, positives,
                 negatives, invalid)
    if writer.rows == 0:
        logging.warning("%s: no valid rows", output_path)
    return ConvertResult(os.fspath(output_path), writer.rows, writer.width - 2, positives,
                         negatives, invalid)


def convert_all(tsv_path: str | os.PathLike, class_names: Sequence[str], output_path: str | os.PathLike,
                img_dim: int | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                class_list_path: str | None = None) -> ConvertResult:
    """All-samples TSV -> [N, h+1] float32 .npy (feature, class id), grouped by class id."""
    class_to_id = tsv_reader.make_class_to_id(class_names)
    with _progress(tsv_path) as progress:
        chunks = tsv_reader.iter_tsv_chunks(tsv_path, "all", class_to_id, img_dim, chunk_rows,
                                            class_list_path)
        return write_all_npy(_counted(chunks, progress), output_path, class_names, chunk_rows)


def write_all_npy(chunks: Iterable[tsv_reader.TsvChunk], output_path: str | os.PathLike, class_names: Sequence[str],
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ConvertResult:
    """All-samples rows -> [N, h+1] float32 .npy (feature, class id), grouped by class id.

    Rows are first written in input order to a scratch file beside the output, then
    gathered `chunk_rows` at a time in stable class-id order into the output (atomically).

    Args:
      chunks: iterable of tsv_reader.TsvChunk (features and class_ids used), in order.
      output_path: the .npy file.
      class_names: the class list (for the log).
      chunk_rows: rows gathered per block.

    Returns:
      ConvertResult.
    """
    output_path = os.fspath(output_path)
    with fileio.atomic_path(output_path) as output_tmp:
        scratch = output_tmp + ".input_order"
        try:
            class_id_blocks = []
            with open(scratch, "wb") as f:
                writer = None
                for chunk in chunks:
                    h = chunk.features.shape[1]
                    if writer is None:
                        writer = NpyRowWriter(f, h + 1)
                    block = np.empty((len(chunk), h + 1), dtype=np.float32)
                    block[:, :h] = chunk.features
                    block[:, h] = chunk.class_ids
                    writer.append(block)
                    class_id_blocks.append(chunk.class_ids)
                if writer is None:
                    raise InputError("no rows to write", path=output_path)
                writer.finish()
            class_ids = np.concatenate(class_id_blocks)
            if np.all(class_ids[1:] >= class_ids[:-1]):
                os.replace(scratch, output_tmp)  # already grouped
            else:
                order = np.argsort(class_ids, kind="stable")
                source = np.load(scratch, mmap_mode="r")
                with open(output_tmp, "wb") as f:
                    sorted_writer = NpyRowWriter(f, writer.width)
                    for start in range(0, len(order), chunk_rows):
                        sorted_writer.append(source[order[start:start + chunk_rows]])
                    sorted_writer.finish()
                del source
        finally:
            if os.path.exists(scratch):
                os.remove(scratch)
    counts = np.bincount(class_ids, minlength=len(class_names))
    logging.info("%s: %d rows of %d classes, grouped by class id", output_path, len(class_ids),
                 np.count_nonzero(counts))
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        logging.warning("%s: %d classes have no samples, e.g. %r", output_path, empty.size,
                        class_names[empty[0]])
    return ConvertResult(output_path, len(class_ids), writer.width - 1)


def convert_ref(tsv_path: str | os.PathLike, class_names: Sequence[str], output_path: str | os.PathLike, num_ref: int,
                img_dim: int | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                class_list_path: str | None = None) -> ConvertResult:
    """Reference TSV -> [num_class, num_ref, h] float32 .npy; each (class, ref_id) once."""
    if num_ref < 1:
        raise InputError("must be positive, got %d" % num_ref, field="--num_ref")
    class_to_id = tsv_reader.make_class_to_id(class_names)
    num_classes = len(class_names)
    tsv_path = os.fspath(tsv_path)
    first_seen = np.zeros((num_classes, num_ref), dtype=np.int64)  # line number; 0 = unseen
    with fileio.atomic_path(output_path) as output_tmp, _progress(tsv_path) as progress:
        ref = None
        for chunk in tsv_reader.iter_tsv_chunks(tsv_path, "ref", class_to_id, img_dim,
                                                chunk_rows, class_list_path):
            progress.update(len(chunk))
            if ref is None:
                ref = np.lib.format.open_memmap(output_tmp, mode="w+", dtype=np.float32,
                                                shape=(num_classes, num_ref,
                                                       chunk.features.shape[1]))
            for class_id, name, ref_id, line in zip(chunk.class_ids, chunk.class_names,
                                                    chunk.ref_ids, chunk.line_numbers):
                if ref_id >= num_ref:
                    raise InputError("%d is out of range [0, %d) (--num_ref=%d)"
                                     % (ref_id, num_ref, num_ref), path=tsv_path,
                                     line=int(line), field="ref_id")
                if first_seen[class_id, ref_id]:
                    raise InputError("duplicate row for class %r, ref_id %d (first on line %d)"
                                     % (name, ref_id, first_seen[class_id, ref_id]),
                                     path=tsv_path, line=int(line), field="ref_id")
                first_seen[class_id, ref_id] = line
            ref[chunk.class_ids, chunk.ref_ids] = chunk.features
        missing = np.argwhere(first_seen == 0)
        if missing.size:
            class_id, ref_id = missing[0]
            name = class_names[class_id]
            if not first_seen[class_id].any():
                raise InputError("class %r (id %d) has no rows; every class of the class list "
                                 "needs %d reference rows" % (name, class_id, num_ref),
                                 path=tsv_path, field="class_name")
            raise InputError("class %r has no row with ref_id %d (needs ref_id 0..%d)"
                             % (name, ref_id, num_ref - 1), path=tsv_path, field="ref_id")
        h = ref.shape[2]
        ref.flush()
        del ref
    logging.info("%s: references [%d classes, %d per class, %d dims]", output_path,
                 num_classes, num_ref, h)
    return ConvertResult(os.fspath(output_path), num_classes * num_ref, h)


def convert(split: str, class_list: str, data_path: str, output_dir: str, num_ref: int = 32,
            img_dim: int | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ConvertResult:
    """Converts one split's TSV into output_dir/{split}.npy (see the module docstring).

    Args:
      split: "train", "val", "all" or "ref".
      class_list: path of the class list.
      data_path: path of the TSV.
      output_dir: directory for {split}.npy (created if missing).
      num_ref: references per class (split "ref" only).
      img_dim: feature dimension every row must have; None: the first row fixes it.
      chunk_rows: rows parsed per chunk.

    Returns:
      ConvertResult.
    """
    if split not in SPLITS:
        raise InputError("unknown split %r, expected one of %s" % (split, ", ".join(SPLITS)),
                         field="--split")
    class_names = tsv_reader.read_class_list(class_list)
    output_path = os.path.join(output_dir, split + ".npy")
    logging.info("converting %s (%s split, %d classes) to %s", data_path, split,
                 len(class_names), output_path)
    kwargs = dict(img_dim=img_dim, chunk_rows=chunk_rows, class_list_path=class_list)
    if split in ("train", "val"):
        return convert_verified(data_path, class_names, output_path, **kwargs)
    if split == "all":
        return convert_all(data_path, class_names, output_path, **kwargs)
    return convert_ref(data_path, class_names, output_path, num_ref, **kwargs)


def define_flags() -> None:
    flags.DEFINE_enum("split", None, list(SPLITS), "Which file to convert: train, val, all or ref.", required=True)
    flags.DEFINE_string("class_list", None, "Class list: one class name per line.", required=True)
    flags.DEFINE_string("data_path", None, "The TSV file to convert.", required=True)
    flags.DEFINE_string("output_dir", None, "Directory for {split}.npy.", required=True)
    define_num_ref(32)
    flags.DEFINE_integer("img_dim", -1, "Feature dimension every row must have; -1: the "
                         "first row's.", lower_bound=-1)
    flags.register_validator("img_dim", lambda value: value != 0,
                             message="must be positive or -1 (take it from the first row)")
    flags.DEFINE_integer("chunk_rows", DEFAULT_CHUNK_ROWS, "Rows parsed per chunk (memory "
                         "is about one chunk).", lower_bound=1)


def main(argv: Sequence[str]) -> None:
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "split", "unexpected arguments %s" % argv[1:])
    fileio.refuse_output_equal_to_inputs({"output_dir": os.path.join(FLAGS.output_dir, FLAGS.split + ".npy")},
                                         [("--data_path", FLAGS.data_path), ("--class_list", FLAGS.class_list)])
    convert(FLAGS.split, FLAGS.class_list, FLAGS.data_path, FLAGS.output_dir,
            num_ref=FLAGS.num_ref, img_dim=None if FLAGS.img_dim == -1 else FLAGS.img_dim,
            chunk_rows=FLAGS.chunk_rows)


def run() -> None:
    """Console entry point (cleannet-convert-data)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
