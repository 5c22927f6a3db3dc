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
OUTPUT.partial.features (cleannet/partial_features.py); running the same command again after
an interruption (or after fixing a bad image) continues after the last finished batch, and
the output is the same file an uninterrupted run writes. A resume state made with other
settings (or from another list) is replaced with a one-line notice, but only when its
header proves this tool wrote it; other files of those names are never touched. The output
appears, atomically, only when complete. --num_shards / --shard_index extract one
contiguous block of the list (merge the shards' TSVs in shard order, e.g. with cat).

One run per output at a time: OUTPUT.lock is held while it runs (a second run is refused
with one line naming it) and removed at the end. An output that is an input, also through
a symbolic or hard link, is refused before anything is written. --weights=imagenet on a
machine that cannot download: one line naming the weights and --weights=FILE.weights.h5,
exit 2, nothing written.

From Python: `extract_with(ExtractConfig(...))` (or `extract(input_list, output_file,
**settings)`); only `main`, `run`, `define_flags` and `config_from_flags` read the flags.
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
      InputError (list:line): a malformed row, a duplicate key, a path leaving the root, a
        missing image file.
    """
    from cleannet.image_input import resolve_image_path

    num_rows, columns = 0, None
    for row in image_list.iter_list_rows(list_path, class_names, unique_keys=True):
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


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """An extraction's settings: the command-line flags of the same names (module docstring).

    output_format "tsv" or "npy" (npy needs class_list); image_size None: the backbone's (at
    least 32 otherwise); image_root None: the list's directory; weights "imagenet", a
    .weights.h5 file, or None (random, tests only).
    """

    input_list: str
    output_file: str
    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    image_root: str | None = None
    class_list: str | None = None
    output_format: str = "tsv"
    batch_size: int = 32
    image_size: int | None = None
    skip_bad_images: bool = False
    shard_index: int = 0
    num_shards: int = 1
    overwrite: bool = False

    @property
    def root(self) -> str:
        return default_image_root(self.input_list, self.image_root)

    @property
    def lock_path(self) -> str:
        """The lock held while an extraction writes this output and its resume state."""
        return os.fspath(self.output_file) + ".lock"


def check_paths(config: ExtractConfig) -> None:
    """The inputs exist and the output is neither an input (symbolic and hard links included)
    nor, without `overwrite`, an existing file: os.path checks only, so that they fail before
    TensorFlow loads."""
    from noisylabels.fileio import refuse_output_equal_to_inputs

    for flag, path in (("--input_list", config.input_list), ("--class_list", config.class_list)):
        if path is not None and not os.path.isfile(path):
            raise InputError("file not found", path=path, field=flag)
    check_flag(os.path.isdir(config.root), "image_root", "not a directory: %s" % config.root)
    output = os.fspath(config.output_file)
    # (OUTPUT.partial, .partial.features and .lock need no such check: a file there that the
    # extractor did not write, an input reached through a link included, is refused unread.)
    refuse_output_equal_to_inputs({"output_file": output},
                                  [("--input_list", config.input_list), ("--class_list", config.class_list)])
    check_flag(config.overwrite or not os.path.exists(output), "output_file",
               "%s exists; pass --overwrite to replace it" % output)


def _resume_check(store, list_path, start):
    """The resume state must belong to this list (its last finished row has the same key);
    one made from another list is replaced (its header proved it is the extractor's)."""
    if store.rows_done == 0:
        return
    row = next(image_list.iter_list_rows(list_path, None, start + store.rows_done - 1), None)
    if row is None or row.key != store.last_key:
        store.restart("it was made from another list: row %d has key %r there, %r here"
                      % (start + store.rows_done, store.last_key, row.key if row else None))


def extract(input_list: str, output_file: str, **settings) -> ExtractResult:
    """`extract_with(ExtractConfig(input_list, output_file, **settings))`."""
    return extract_with(ExtractConfig(os.fspath(input_list), os.fspath(output_file), **settings))


def extract_with(config: ExtractConfig) -> ExtractResult:
    """Extracts the features of an image list's rows (module docstring); resumes a stopped run.

    One run at a time per output: the lock OUTPUT.lock is held from the checks to the
    published output (a second run is refused with one line naming it) and removed after.

    Returns:
      ExtractResult.
    """
    from noisylabels.run_record import FileLock

    if config.output_format == "npy" and not config.class_list:
        raise ValueError("output_format='npy' needs a class_list")
    check_paths(config)
    directory = os.path.dirname(os.path.abspath(config.output_file))
    created = not os.path.isdir(directory)
    try:
        _make_directory(directory, config.output_file)
        with FileLock(config.lock_path, remedy="wait for it to end (two runs on one output would mix their rows)",
                      remove_on_release=True):
            check_paths(config)  # again, now that no other run can publish the output
            return _extract_locked(config)
    except BaseException:
        if created and os.path.isdir(directory) and not os.listdir(directory):
            os.rmdir(directory)  # the empty directory this call made
        raise


def _make_directory(directory: str, output_file: str) -> None:
    from noisylabels.fileio import output_error

    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise output_error(output_file, err) from None


def _extract_locked(config: ExtractConfig) -> ExtractResult:
    from cleannet import feature_extractor
    from cleannet.partial_features import PartialFeatures
    from noisylabels.progress import Progress

    backbone = feature_extractor.BACKBONES[config.backbone]
    image_size = config.image_size or backbone.image_size
    class_names = tsv_reader.read_class_list(config.class_list) if config.class_list else None
    start, stop, columns = check_list(config.input_list, config.root, class_names, config.shard_index,
                                      config.num_shards)
    # The model first: a download that fails offline leaves nothing behind.
    embed = feature_extractor.make_embed_function(
        feature_extractor.build_backbone(config.backbone, config.weights, image_size), config.backbone)
    weights = config.weights
    settings = dict(input_list=os.path.abspath(config.input_list), image_root=os.path.abspath(config.root),
                    backbone=config.backbone, image_size=image_size, batch_size=config.batch_size,
                    shard=[config.shard_index, config.num_shards],
                    weights=weights if weights in (None, "imagenet") else os.path.abspath(weights))
    store = PartialFeatures(config.output_file, settings, backbone.feature_dim)
    resumed = store.exists()
    store.open()
    try:
        _resume_check(store, config.input_list, start)
        if resumed and store.rows_done:
            logging.info("Resuming %s: %d of %d rows already done", store.log_path, store.rows_done, stop - start)
        began, done_before = time.monotonic(), store.rows_done
        with Progress(total=stop - start, unit="images", desc="extract features", initial=store.rows_done) as bar:
            _Extraction(config.input_list, config.root, start, stop, store, embed, image_size, config.batch_size,
                        config.skip_bad_images).run(bar)
        seconds = time.monotonic() - began
    except InputError:
        if store.rows_done == 0:
            store.remove()
        raise
    finally:
        store.close()
    kept, skipped_keys = _kept_rows(config.input_list, start, stop, store)
    if config.output_format == "tsv":
        rows = write_tsv(config.output_file, kept)
    else:
        rows = write_npy(config.output_file, kept, class_names, columns)
    store.remove()
    rate = (store.rows_done - done_before) / seconds if seconds > 0 else 0.0
    logging.info("%s: %d rows, %d-d features (%s); %.2f images/s in this run", config.output_file, rows,
                 backbone.feature_dim, config.backbone, rate)
    if skipped_keys:
        logging.warning("--skip_bad_images: %d unreadable images left out, keys: %s", len(skipped_keys),
                        ", ".join(skipped_keys))
    return ExtractResult(os.fspath(config.output_file), rows, skipped_keys, backbone.feature_dim, rate)


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


def config_from_flags() -> ExtractConfig:
    """The ExtractConfig of the parsed command-line flags."""
    FLAGS = flags.FLAGS
    return ExtractConfig(
        FLAGS.input_list, FLAGS.output_file, backbone=FLAGS.backbone, weights=FLAGS.weights,
        image_root=FLAGS.image_root, class_list=FLAGS.class_list, output_format=FLAGS.output_format,
        batch_size=FLAGS.batch_size, image_size=FLAGS.image_size, skip_bad_images=FLAGS.skip_bad_images,
        shard_index=FLAGS.shard_index, num_shards=FLAGS.num_shards, overwrite=FLAGS.overwrite)


def main(argv: Sequence[str]) -> None:
    from noisylabels.console import load_tensorflow

    check_flag(len(argv) == 1, "input_list", "unexpected arguments %s" % argv[1:])
    config = config_from_flags()
    check_paths(config)
    load_tensorflow()  # after the flag and path checks: a bad command line fails without loading TensorFlow
    extract_with(config)


def run() -> None:
    """Console entry point (cleannet-extract-features)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
