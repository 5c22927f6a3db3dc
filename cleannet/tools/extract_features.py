"""Extracts image features for CleanNet: an image list in, the feature TSV (or .npy) out.

    python util/extract_features.py --input_list=all_list.tsv --image_root=images/ \\
        --output_file=all.tsv --backbone=resnet50 --weights=imagenet

Input: an image list (util/image_list.py): key, image_path, class_name (all samples) or
key, image_path, class_name, vlabel (verified samples), tab-separated. Relative image paths
are joined to --image_root (default: the list's directory); no path may leave it (`..` or an
absolute path elsewhere is an error naming the list line).

Output (--output_format):
  tsv  the same rows in the same order with the feature column appended (the image path in
       the url column): exactly the 4-column (all) or 5-column (verified) TSV that
       util/convert_data.py and inference.py read. Values with 9 significant digits (a
       float32 reads back exactly).
  npy  what util/convert_data.py would make of that TSV, without the TSV: [N, h+1]
       (feature, class id; grouped by class id) for an all-samples list, [N, h+2] (feature,
       class id, vlabel; vlabel -1 rows dropped) for a verified list. Needs --class_list.

The feature is the backbone's global-average-pooled last convolutional block after its
own preprocess_input (cleannet/feature_extractor.py). Images are decoded in parallel in a
tf.data pipeline and resized to --image_size only when they have another size. The list is
streamed: memory is bounded by a batch, whatever the list's length.

Faults and resuming: every row is checked before any image is decoded (format, paths,
missing files: an error naming the list line, exit 2, nothing written). An image that
cannot be decoded stops the run the same way, unless --skip_bad_images (the row is left
out; the count and the keys are reported). Finished batches are kept in OUTPUT.partial and
OUTPUT.partial.features (util/partial_features.py); running the same command again after
an interruption (or after fixing a bad image) continues after the last finished batch, and
the output is the same file an uninterrupted run writes. The output appears, atomically,
only when complete. --num_shards / --shard_index extract one contiguous block of the list
(merge the shards' TSVs in shard order, e.g. with cat).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from absl import flags, logging

from cleannet import image_list, tsv_reader
from noisylabels.errors import InputError, check_flag
from noisylabels.flagutil import run_tool

if TYPE_CHECKING:
    import tensorflow as tf

    from cleannet.partial_features import PartialFeatures
    from noisylabels.progress import Progress

_T = TypeVar("_T")

OUTPUT_FORMATS = ("tsv", "npy")
BACKBONE_NAMES = ("resnet50", "efficientnet_v2_b0")  # cleannet.feature_extractor.BACKBONES
NPY_CHUNK_ROWS = 4096


@dataclasses.dataclass
class ExtractResult:
    """What an extraction wrote.

    Attributes:
      output_path: the file written.
      rows: rows written (list rows minus the skipped ones; npy of a verified list: minus
        vlabel -1 rows too).
      skipped_keys: keys of the rows skipped as unreadable (--skip_bad_images).
      feature_dim: values per feature.
      images_per_s: images extracted per second in this run (0 when nothing was left to do).
    """

    output_path: str
    rows: int
    skipped_keys: list[str]
    feature_dim: int
    images_per_s: float


def shard_range(num_rows: int, shard_index: int, num_shards: int) -> tuple[int, int]:
    """Rows [start, stop) of shard `shard_index` of `num_shards` contiguous, near-equal blocks."""
    return num_rows * shard_index // num_shards, num_rows * (shard_index + 1) // num_shards


def check_list(list_path: str, image_root: str, class_names: Sequence[str] | None, shard_index: int,
               num_shards: int) -> tuple[int, int, int]:
    """Checks every row; resolves and checks the paths of the shard's rows.

    Returns:
      (start, stop, columns): the shard's row range and the list's column count (3 or 4).

    Raises:
      InputError (list:line): a malformed row, a path leaving the root, a missing image file.
    """
    from cleannet.image_input import resolve_image_path

    num_rows, columns = 0, None
    for row in image_list.iter_list_rows(list_path, class_names):
        num_rows, columns = row.index + 1, len(row.fields)
        resolve_image_path(row.image_path, image_root, list_path, row.line, allow_absolute=False)
    start, stop = shard_range(num_rows, shard_index, num_shards)
    if start == stop:
        raise InputError("shard %d of %d has no rows (the list has %d)" % (shard_index, num_shards, num_rows),
                         path=list_path, field="--shard_index")
    for row in image_list.iter_list_rows(list_path, None, start, stop):
        path = resolve_image_path(row.image_path, image_root, list_path, row.line, allow_absolute=False)
        if not os.path.isfile(path):
            raise InputError("image file not found: %s" % path, path=list_path, line=row.line, field="image_path")
    return start, stop, columns


def batched(iterable: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Lists of up to `size` consecutive items."""
    iterator = iter(iterable)
    while True:
        group = list(itertools.islice(iterator, size))
        if not group:
            return
        yield group


def decode_error(path: str) -> str:
    """Why an image cannot be read or decoded, in one line."""
    import tensorflow as tf

    from cleannet.image_input import decode_rgb

    try:
        decode_rgb(path)
    except tf.errors.OpError as err:
        return str(err.message).splitlines()[0][:200]
    return "unreadable"


class _Extraction:
    """One run over a shard: the pipeline, the model and the resume state."""

    def __init__(self, list_path: str, image_root: str, start: int, stop: int, store: PartialFeatures,
                 embed: Callable[[tf.Tensor], tf.Tensor], image_size: int, batch_size: int,
                 skip_bad_images: bool) -> None:
        self.list_path, self.image_root = list_path, image_root
        self.start, self.stop, self.store = start, stop, store
        self.embed, self.image_size, self.batch_size = embed, image_size, batch_size
        self.skip_bad_images = skip_bad_images

    def rows(self, first: int) -> Iterator[image_list.ListRow]:
        return image_list.iter_list_rows(self.list_path, None, first, self.stop)

    def path_of(self, row: image_list.ListRow) -> str:
        from cleannet.image_input import resolve_image_path

        return resolve_image_path(row.image_path, self.image_root, self.list_path, row.line, allow_absolute=False)

    def run(self, progress: Progress) -> None:
        """Extracts every batch after the finished ones; stores each in the resume state."""
        from cleannet.feature_extractor import make_batch_dataset

        first = self.start + self.store.rows_done

        def batches():
            for number, rows in enumerate(batched(self.rows(first), self.batch_size)):
                yield (number, np.array([r.index for r in rows], np.int64),
                       np.array([self.path_of(r) for r in rows], dtype=object))

        dataset = make_batch_dataset(batches, self.image_size, self.batch_size)
        pending = enumerate(batched(self.rows(first), self.batch_size))
        empty = np.zeros((0, self.store.feature_dim), np.float32)
        for number, indices, images in dataset:
            for expected, rows in pending:
                if expected == number:
                    self.finish_batch(rows, indices.numpy(), self.embed(images).numpy())
                    break
                self.finish_batch(rows, [], empty)  # a batch without a readable image
            progress.update(self.store.rows_done - progress.count)
        for _, rows in pending:
            self.finish_batch(rows, [], empty)
        progress.update(self.store.rows_done - progress.count)

    def finish_batch(self, rows: Sequence[image_list.ListRow], indices: Sequence[int] | np.ndarray,
                     features: np.ndarray) -> None:
        read = set(int(i) for i in indices)
        skipped = [row for row in rows if row.index not in read]
        for row in skipped:
            reason = decode_error(self.path_of(row))
            if not self.skip_bad_images:
                raise InputError("cannot decode image %s (%s); --skip_bad_images leaves such rows out"
                                 % (self.path_of(row), reason), path=self.list_path, line=row.line,
                                 field="image_path")
            logging.warning("%s:%d: skipping key %r: cannot decode image %s (%s)", self.list_path, row.line,
                            row.key, self.path_of(row), reason)
        self.store.append(rows[-1].index + 1 - self.start, features, [row.index for row in skipped], rows[-1].key)


def format_feature_row(values: np.ndarray) -> str:
    """A feature row as the TSV column: 9 significant digits, comma-separated."""
    return ",".join(["%.9g"] * len(values)) % tuple(values.tolist())


def _kept_rows(list_path, start, stop, store):
    """Returns (an iterator of (row, feature float32 [h]) over the shard's rows that were not
    skipped, in list order; the list of the skipped rows' keys, filled while it is iterated)."""
    skipped = set(store.skipped)
    features = store.features()
    skipped_keys = []

    def rows():
        position = 0
        for row in image_list.iter_list_rows(list_path, None, start, stop):
            if row.index in skipped:
                skipped_keys.append(row.key)
                continue
            yield row, features[position]
            position += 1

    return rows(), skipped_keys


def write_tsv(output_path: str, kept: Iterable[tuple[image_list.ListRow, np.ndarray]]) -> int:
    """Writes the list rows with their features appended (atomically). Returns the row count."""
    from noisylabels.fileio import atomic_open

    count = 0
    with atomic_open(output_path, "w", encoding="utf-8", newline="\n") as f:
        for block in batched(kept, 256):
            f.write("".join("\t".join(row.fields) + "\t" + format_feature_row(feature) + "\n"
                            for row, feature in block))
            count += len(block)
    return count


def write_npy(output_path: str, kept: Iterable[tuple[image_list.ListRow, np.ndarray]], class_names: Sequence[str],
              columns: int) -> int:
    """Writes what util/convert_data.py makes of the TSV (module docstring). Returns the row count."""
    from cleannet.tools import convert_data

    class_to_id = tsv_reader.make_class_to_id(class_names)

    def chunks():
        for block in batched(kept, NPY_CHUNK_ROWS):
            rows = [row for row, _ in block]
            yield tsv_reader.TsvChunk(
                first_line=rows[0].line, line_numbers=np.array([r.line for r in rows], np.int64),
                keys=[r.key for r in rows], urls=[r.image_path for r in rows],
                class_names=[r.class_name for r in rows],
                class_ids=np.array([class_to_id[r.class_name] for r in rows], np.int32),
                vlabels=np.array([r.vlabel for r in rows], np.int8) if columns == 4 else None,
                ref_ids=None, features=np.stack([feature for _, feature in block]))

    if columns == 4:
        return convert_data.write_verified_npy(chunks(), output_path).rows
    return convert_data.write_all_npy(chunks(), output_path, class_names, NPY_CHUNK_ROWS).rows


def default_image_root(list_path: str, image_root: str | None) -> str:
    """--image_root, or the list's directory when it is None."""
    return os.path.dirname(os.path.abspath(list_path)) if image_root is None else image_root


def check_paths(list_path: str, image_root: str, class_list: str | None, output_path: str,
                overwrite: bool) -> None:
    """The inputs exist and the output is neither an input nor (without `overwrite`) an existing
    file: os.path checks only, so that they fail before TensorFlow loads."""
    for flag, path in (("--input_list", list_path), ("--class_list", class_list)):
        if path is not None and not os.path.isfile(path):
            raise InputError("file not found", path=path, field=flag)
    check_flag(os.path.isdir(image_root), "image_root", "not a directory: %s" % image_root)
    check_flag(os.path.abspath(output_path) not in (os.path.abspath(list_path), os.path.abspath(class_list or "")),
               "output_file", "must not be an input file: %s" % output_path)
    check_flag(overwrite or not os.path.exists(output_path), "output_file",
               "%s exists; pass --overwrite to replace it" % output_path)


def _resume_check(store, list_path, start):
    """The resume state must belong to this list: its last finished row has the same key."""
    if store.rows_done == 0:
        return
    row = next(image_list.iter_list_rows(list_path, None, start + store.rows_done - 1), None)
    if row is None or row.key != store.last_key:
        raise InputError("the unfinished extraction here was made from another list (row %d has key %r there, "
                         "%r here); delete %s and %s to start again"
                         % (start + store.rows_done, store.last_key, row.key if row else None, store.log_path,
                            store.features_path), path=store.log_path)


def extract(input_list: str, output_file: str, backbone: str = "resnet50", weights: str | None = "imagenet",
            image_root: str | None = None, class_list: str | None = None, output_format: str = "tsv",
            batch_size: int = 32, image_size: int | None = None, skip_bad_images: bool = False,
            shard_index: int = 0, num_shards: int = 1, overwrite: bool = False) -> ExtractResult:
    """Extracts the features of an image list's rows (module docstring); resumes a stopped run.

    Args: as the command-line flags of the same names (their values as the flags allow them:
      output_format "tsv" or "npy", npy with a class_list, image_size None (the backbone's)
      or at least 32); image_root None: the list's directory; weights None: random (tests only).

    Returns:
      ExtractResult.
    """
    from cleannet import feature_extractor

    if output_format == "npy" and not class_list:
        raise ValueError("output_format='npy' needs a class_list")
    image_size = image_size or feature_extractor.BACKBONES[backbone].image_size
    image_root = default_image_root(input_list, image_root)
    check_paths(input_list, image_root, class_list, output_file, overwrite)
    class_names = tsv_reader.read_class_list(class_list) if class_list else None
    start, stop, columns = check_list(input_list, image_root, class_names, shard_index, num_shards)

    from cleannet.partial_features import PartialFeatures
    from noisylabels.progress import Progress

    dim = feature_extractor.BACKBONES[backbone].feature_dim
    settings = dict(input_list=os.path.abspath(input_list), image_root=os.path.abspath(image_root),
                    backbone=backbone, image_size=image_size, batch_size=batch_size, shard=[shard_index, num_shards],
                    weights=weights if weights in (None, "imagenet") else os.path.abspath(weights))
    store = PartialFeatures(output_file, settings, dim)
    resumed = store.exists()
    store.open()
    try:
        _resume_check(store, input_list, start)
        if resumed:
            logging.info("Resuming %s: %d of %d rows already done", store.log_path, store.rows_done, stop - start)
        embed = feature_extractor.make_embed_function(feature_extractor.build_backbone(backbone, weights, image_size),
                                                      backbone)
        began, done_before = time.monotonic(), store.rows_done
        with Progress(total=stop - start, unit="images", desc="extract features", initial=store.rows_done) as bar:
            _Extraction(input_list, image_root, start, stop, store, embed, image_size, batch_size,
                        skip_bad_images).run(bar)
        seconds = time.monotonic() - began
    except InputError:
        store.close()
        if store.rows_done == 0:
            store.remove()
        raise
    finally:
        store.close()
    kept, skipped_keys = _kept_rows(input_list, start, stop, store)
    if output_format == "tsv":
        rows = write_tsv(output_file, kept)
    else:
        rows = write_npy(output_file, kept, class_names, columns)
    store.remove()
    rate = (store.rows_done - done_before) / seconds if seconds > 0 else 0.0
    logging.info("%s: %d rows, %d-d features (%s); %.2f images/s in this run", output_file, rows, dim, backbone, rate)
    if skipped_keys:
        logging.warning("--skip_bad_images: %d unreadable images left out, keys: %s", len(skipped_keys),
                        ", ".join(skipped_keys))
    return ExtractResult(os.fspath(output_file), rows, skipped_keys, dim, rate)


def define_flags() -> None:
    flags.DEFINE_string("input_list", None, "Image list: key, image_path, class_name[, vlabel], tab-separated.",
                        required=True)
    flags.DEFINE_string("image_root", None, "Relative image paths are joined to it and must stay inside it; "
                        "default: the list's directory.")
    flags.DEFINE_string("output_file", None, "The feature TSV (or .npy with --output_format=npy).", required=True)
    flags.DEFINE_enum("output_format", "tsv", list(OUTPUT_FORMATS), "tsv: the list rows with the feature "
                      "appended; npy: util/convert_data.py's array for them (needs --class_list).")
    flags.DEFINE_enum("backbone", "resnet50", list(BACKBONE_NAMES), "keras.applications backbone.")
    flags.DEFINE_string("weights", "imagenet", "imagenet (Keras downloads its weights) or a .weights.h5 file saved "
                        "from the same keras.applications model built with include_top=False, pooling='avg'.")
    flags.DEFINE_string("class_list", None, "Class list; when given, every class_name must be in it.")
    flags.DEFINE_integer("batch_size", 32, "Images per batch (memory is about one batch).", lower_bound=1)
    flags.DEFINE_integer("image_size", None, "Side images are resized to; default: the backbone's (224).",
                         lower_bound=32)
    flags.DEFINE_bool("skip_bad_images", False, "Leave out rows whose image cannot be decoded (reported with "
                      "their keys) instead of stopping at the first.")
    flags.DEFINE_integer("num_shards", 1, "Split the list into this many contiguous blocks ...", lower_bound=1)
    flags.DEFINE_integer("shard_index", 0, "... and extract block number shard_index (0-based).", lower_bound=0)
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output_file.")
    flags.register_multi_flags_validator(
        ["output_format", "class_list"], lambda v: v["output_format"] != "npy" or bool(v["class_list"]),
        message="--output_format=npy needs --class_list")
    flags.register_multi_flags_validator(
        ["shard_index", "num_shards"], lambda v: v["shard_index"] < v["num_shards"],
        message="--shard_index must be less than --num_shards")


def main(argv: Sequence[str]) -> None:
    from noisylabels.console import load_tensorflow

    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "input_list", "unexpected arguments %s" % argv[1:])
    check_paths(FLAGS.input_list, default_image_root(FLAGS.input_list, FLAGS.image_root), FLAGS.class_list,
                FLAGS.output_file, FLAGS.overwrite)
    load_tensorflow()  # after the flag and path checks: a bad command line fails without loading TensorFlow
    extract(FLAGS.input_list, FLAGS.output_file, backbone=FLAGS.backbone, weights=FLAGS.weights,
            image_root=FLAGS.image_root, class_list=FLAGS.class_list, output_format=FLAGS.output_format,
            batch_size=FLAGS.batch_size, image_size=FLAGS.image_size, skip_bad_images=FLAGS.skip_bad_images,
            shard_index=FLAGS.shard_index, num_shards=FLAGS.num_shards, overwrite=FLAGS.overwrite)


def run() -> None:
    """Console entry point (cleannet-extract-features)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
