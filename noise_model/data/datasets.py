"""Input pipelines over the prepared data sets (the one data entry point of train.py).

A prepared directory is written by `cifar10.py`, `digits.py` or `clothing1m.py`:
- cifar10 / digits: `{split}_images.npy` uint8 [n, 32, 32, 3] and `{split}_labels.npy`
  int64 [n, 3], held in memory;
- clothing1m: `{split}.txt` lines "relative/image/path.jpg clean noisy ntype", images read
  from the dataset root recorded in metadata.json.
Both have `metadata.json`, `mean_image.npy` and `matrix_c.npy`.

`make_dataset` yields `(images float32 [B, H, W, 3], labels int64 [B, 3])`: images with
the mean image subtracted (RGB, 0..255 scale), label columns (clean label, noisy label,
noise type), -1 where unknown.
- cifar10 / digits: H = W = 32, no augmentation (as the Caffe CIFAR10-quick setup).
- clothing1m: decode (JPEG, PNG, GIF, BMP, WebP; 3 channels), resize to 256×256
  (bilinear), subtract the 256×256 mean image, then a random 227×227 crop and a random
  horizontal mirror for training (seeded, stateless: the same seed gives the same
  crops), the centre crop for testing. With `on_bad_image = "skip"` in metadata.json,
  images that still fail to decode at training time are dropped (the prepare step has
  already dropped the ones it found); with "stop" the prepare step has checked every
  image, and a failure here is TensorFlow's error.

Training order (`training_order`): the stream of training batches is a pure function of
(seed, iteration). Epoch e visits the split's rows in the permutation seeded by (seed, e)
(a stateless shuffle), a batch that crosses an epoch end wraps into the next epoch, and
the element at stream position p (= iteration · batch_size + offset in the batch) is
augmented with the stateless seed (seed, p). A run resumed at iteration t from a
checkpoint therefore sees exactly the batches an uninterrupted run sees from t on, with
nothing about the pipeline stored in the checkpoint. (Clothing1M with
`on_bad_image = "skip"`: a batch that contains an image failing to decode at training
time is shorter, and the later batches shift by the dropped elements only in the run that
met the failure; images the prepare step checked never fail.)
"""

import os

import numpy as np
import tensorflow as tf

from noise_model.data.clothing1m_format import CROP_SIZE, ON_BAD_IMAGE_CHOICES, RESIZE_SIZE, check_key
from noise_model.protocol import ARRAY_DATASETS, DATASETS, NUM_NOISE_TYPES, SPLITS
from noisylabels.errors import InputError
from noisylabels.fileio import iter_text_lines, load_npy
from noisylabels.state_files import read_json_state
from noisylabels.shuffled_order import epoch_shuffled_order
from noisylabels.strict_numbers import parse_int

METADATA_FILE = "metadata.json"


# ---------------------------------------------------------------------------------------
# Metadata, C and split sizes.


def read_metadata(prepared_dir: str) -> dict:
    """Reads `prepared_dir/metadata.json`.

    Returns:
      dict with at least "dataset" (str), "num_classes" (int ≥ 2) and "image_size"
      (int: 32 or 227); clothing1m also has "dataset_root" and "on_bad_image".
    """
    path = os.path.join(prepared_dir, METADATA_FILE)
    if not os.path.isfile(path):
        raise InputError("file not found: not a prepared data directory (run "
                         "noise_model.cifar10, .digits or .clothing1m first)", path=path)
    metadata = read_json_state(path, "prepare the data directory again (noise_model.cifar10, .digits or "
                                     ".clothing1m)")
    if metadata.get("dataset") not in DATASETS:
        raise InputError("unknown dataset %r, expected one of %s"
                         % (metadata.get("dataset"), ", ".join(DATASETS)), path=path, field="dataset")
    for key in ("num_classes", "image_size"):
        value = metadata.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise InputError("expected an integer ≥ 2, found %r" % (value,), path=path, field=key)
    if metadata["dataset"] == "clothing1m":
        if not isinstance(metadata.get("dataset_root"), str):
            raise InputError("missing the dataset root", path=path, field="dataset_root")
        metadata.setdefault("on_bad_image", "stop")
        if metadata["on_bad_image"] not in ON_BAD_IMAGE_CHOICES:
            raise InputError("must be 'stop' or 'skip', found %r" % metadata["on_bad_image"],
                             path=path, field="on_bad_image")
    return metadata


def load_matrix_c(prepared_dir: str, num_classes: int) -> np.ndarray:
    """Loads C ([noisy, clean], columns p(noisy | clean)) as float32 [L, L].

    Raises:
      InputError: missing file, not L×L, non-finite or negative entries.
    """
    path = os.path.join(prepared_dir, "matrix_c.npy")
    matrix = load_npy(path, field="matrix_c", ndim=2)
    if matrix.shape != (num_classes, num_classes):
        raise InputError("has shape %s, expected [%d, %d]" % (list(matrix.shape), num_classes,
                                                            num_classes), path=path, field="matrix_c")
    matrix = matrix.astype(np.float64)
    if not np.all(np.isfinite(matrix)):
        raise InputError("has non-finite entries", path=path, field="matrix_c")
    if np.any(matrix < 0):
        raise InputError("has negative entries", path=path, field="matrix_c")
    return matrix.astype(np.float32)


def _check_split(dataset, prepared_dir, split):
    """Checks `dataset` and `split` against the contract and the metadata; returns metadata."""
    if dataset not in DATASETS:
        raise InputError("unknown dataset %r, expected one of %s" % (dataset, ", ".join(DATASETS)),
                         field="dataset")
    if split not in SPLITS[dataset]:
        raise InputError("unknown %s split %r, expected one of %s"
                         % (dataset, split, ", ".join(SPLITS[dataset])), field="split")
    metadata = read_metadata(prepared_dir)
    if metadata["dataset"] != dataset:
        raise InputError("holds prepared %s data, not %s" % (metadata["dataset"], dataset),
                         path=os.path.join(prepared_dir, METADATA_FILE), field="dataset")
    return metadata


def split_size(dataset: str, prepared_dir: str, split: str) -> int:
    """The number of samples in a split (int)."""
    _check_split(dataset, prepared_dir, split)
    if dataset in ARRAY_DATASETS:
        labels = load_npy(os.path.join(prepared_dir, "%s_labels.npy" % split), ndim=2, mmap_mode="r")
        return int(labels.shape[0])
    path = os.path.join(prepared_dir, "%s.txt" % split)
    if not os.path.isfile(path):
        raise InputError("file not found", path=path)
    return sum(1 for _, text in iter_text_lines(path) if text.strip())


# ---------------------------------------------------------------------------------------
# Reading a split.


def _check_labels(labels, num_classes, path):
    """InputError unless int labels [n, 3] with clean/noisy in [-1, L) and ntype in [-1, 3)."""
    if labels.ndim != 2 or labels.shape[1] != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError("expected integer labels [n, 3], found %s %s"
                         % (labels.dtype, list(labels.shape)), path=path)
    limits = (num_classes, num_classes, NUM_NOISE_TYPES)
    names = ("clean label", "noisy label", "noise type")
    for column, (limit, name) in enumerate(zip(limits, names)):
        bad = np.flatnonzero((labels[:, column] < -1) | (labels[:, column] >= limit))
        if bad.size:
            raise InputError("row %d: %s %d outside [-1, %d)"
                             % (bad[0], name, labels[bad[0], column], limit), path=path)


def load_array_split(prepared_dir: str, split: str, num_classes: int,
                     image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Loads a cifar10/digits split → (images uint8 [n, s, s, 3], labels int64 [n, 3])."""
    images_path = os.path.join(prepared_dir, "%s_images.npy" % split)
    labels_path = os.path.join(prepared_dir, "%s_labels.npy" % split)
    images = load_npy(images_path, ndim=4)
    labels = load_npy(labels_path, ndim=2)
    if images.dtype != np.uint8 or images.shape[1:] != (image_size, image_size, 3):
        raise InputError("expected uint8 [n, %d, %d, 3], found %s %s"
                         % (image_size, image_size, images.dtype, list(images.shape)), path=images_path)
    _check_labels(labels, num_classes, labels_path)
    if len(images) != len(labels):
        raise InputError("%d labels for %d images in %s" % (len(labels), len(images), images_path),
                         path=labels_path)
    return images, labels.astype(np.int64)


def read_split_list(path: str, dataset_root: str, num_classes: int) -> tuple[list[str], np.ndarray]:
    """Reads a clothing1m `{split}.txt`.

    Returns:
      (paths: list of str, the keys joined to `dataset_root`; labels int64 [n, 3]).

    Raises:
      InputError (file:line): malformed line, label out of range, key leaving the root.
    """
    if not os.path.isfile(path):
        raise InputError("file not found", path=path)
    paths, labels = [], []
    for number, text in iter_text_lines(path):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise InputError("expected 'key clean noisy ntype', found %d fields" % len(fields),
                             path=path, line=number)
        check_key(fields[0], path, number)
        values = [parse_int(v, path, number, name) for v, name in zip(fields[1:], ("clean", "noisy", "ntype"))]
        limits = (num_classes, num_classes, NUM_NOISE_TYPES)
        if any(not -1 <= v < limit for v, limit in zip(values, limits)):
            raise InputError("labels %s outside [-1, %d), [-1, %d), [-1, %d)"
                             % (values, *limits), path=path, line=number)
        paths.append(os.path.join(dataset_root, fields[0]))
        labels.append(values)
    return paths, np.asarray(labels, dtype=np.int64).reshape(-1, 3)


def load_mean_image(prepared_dir: str, size: int) -> np.ndarray:
    """Loads `mean_image.npy` as float32 [size, size, 3] (InputError otherwise)."""
    path = os.path.join(prepared_dir, "mean_image.npy")
    mean = load_npy(path, field="mean_image", ndim=3)
    if mean.shape != (size, size, 3) or not np.all(np.isfinite(mean)):
        raise InputError("expected finite float [%d, %d, 3], found %s" % (size, size, list(mean.shape)),
                         path=path, field="mean_image")
    return mean.astype(np.float32)


# ---------------------------------------------------------------------------------------
# The pipelines.


def training_order(num_samples: int, seed: int, start_position: int = 0) -> tf.data.Dataset:
    """The training stream's row indices from stream position `start_position` on.

    Epoch e is the permutation of range(num_samples) seeded by (seed, e); epochs follow
    each other without a break (noisylabels.shuffled_order.epoch_shuffled_order).

    Args:
      num_samples: rows in the split, N > 0.
      seed: int, the data-order seed.
      start_position: the first stream position produced (iteration · batch_size when
        resuming at an iteration).

    Returns:
      An endless `tf.data.Dataset` of (row index int64 [], stream position int64 []).
    """
    positions = tf.data.Dataset.range(int(start_position), np.iinfo(np.int64).max)
    return tf.data.Dataset.zip((epoch_shuffled_order(num_samples, seed, start_position), positions))


def _check_not_empty(count, training, path):
    if training and count == 0:
        raise InputError("the split is empty: nothing to train on", path=path)


def _array_dataset(prepared_dir, split, metadata, batch_size, training, seed, drop_remainder,
                   start_iteration):
    size = metadata["image_size"]
    images, labels = load_array_split(prepared_dir, split, metadata["num_classes"], size)
    _check_not_empty(len(labels), training, os.path.join(prepared_dir, "%s_labels.npy" % split))
    mean = tf.constant(load_mean_image(prepared_dir, size))
    if training:
        # Index batches of the (seed, iteration) order, gathered from the in-memory split.
        images_t, labels_t = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
        data = training_order(len(labels), seed, start_iteration * batch_size)
        data = data.map(lambda index, position: index).batch(batch_size, drop_remainder=True)
        data = data.map(lambda index: (tf.gather(images_t, index), tf.gather(labels_t, index)))
    else:
        data = tf.data.Dataset.from_tensor_slices((images, labels))
        data = data.batch(batch_size, drop_remainder=drop_remainder)
    data = data.map(lambda x, y: (tf.cast(x, tf.float32) - mean, y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def _decode_resized(path, mean):
    """Reads an image file → float32 [256, 256, 3], RGB, resized, mean subtracted."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, [RESIZE_SIZE, RESIZE_SIZE], method="bilinear")
    return image - mean


def _file_dataset(prepared_dir, split, metadata, batch_size, training, seed, drop_remainder,
                  start_iteration):
    root = metadata["dataset_root"]
    if not os.path.isdir(root):
        raise InputError("dataset root %s not found" % root,
                         path=os.path.join(prepared_dir, METADATA_FILE), field="dataset_root")
    paths, labels = read_split_list(os.path.join(prepared_dir, "%s.txt" % split), root,
                                    metadata["num_classes"])
    mean = tf.constant(load_mean_image(prepared_dir, RESIZE_SIZE))
    paths = tf.constant(paths, dtype=tf.string)
    labels = tf.constant(labels, dtype=tf.int64)
    count = int(labels.shape[0])
    _check_not_empty(count, training, os.path.join(prepared_dir, "%s.txt" % split))
    if training:
        # Each element's augmentation seed is (seed, its position in the stream).
        data = training_order(count, seed, start_iteration * batch_size)

        def load(index, position):
            image = _decode_resized(paths[index], mean)
            crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
                tf.stack([tf.constant(seed, tf.int64), position]), num=2))
            image = tf.image.stateless_random_crop(image, [CROP_SIZE, CROP_SIZE, 3], seed=crop_seed)
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
            return image, labels[index]
    else:
        data = tf.data.Dataset.range(count)
        offset = (RESIZE_SIZE - CROP_SIZE) // 2

        def load(index):
            image = _decode_resized(paths[index], mean)
            image = image[offset:offset + CROP_SIZE, offset:offset + CROP_SIZE, :]
            return image, labels[index]

    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if metadata["on_bad_image"] == "skip":
        data = data.ignore_errors(log_warning=True)
    data = data.batch(batch_size, drop_remainder=drop_remainder)
    return data.prefetch(tf.data.AUTOTUNE)


def make_dataset(dataset: str, prepared_dir: str, split: str, batch_size: int, training: bool, seed: int = 0,
                 drop_remainder: bool | None = None, start_iteration: int = 0) -> tf.data.Dataset:
    """A tf.data pipeline over one prepared split.

    Args:
      dataset: "cifar10", "digits" or "clothing1m" (must match metadata.json).
      prepared_dir: the prepared directory.
      split: a split name of SPLITS[dataset].
      batch_size: samples per batch (> 0).
      training: True: the endless `training_order` stream (a new permutation every
        epoch, seeded), augmented (clothing1m: random 227 crop + mirror, seeded by the
        stream position); False: one pass in file order, centre crop for clothing1m.
      seed: seeds the order and the augmentation.
      drop_remainder: drop the last partial batch; default True for training (every batch
        full, always so: the stream wraps around), False otherwise.
      start_iteration: training only: the first batch produced is batch number
        `start_iteration` of the stream (resuming at that iteration).

    Returns:
      tf.data.Dataset of (images float32 [B, H, W, 3] mean-subtracted, labels int64 [B, 3]).
    """
    metadata = _check_split(dataset, prepared_dir, split)
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError("must be a positive integer, got %r" % (batch_size,), field="batch_size")
    if drop_remainder is None:
        drop_remainder = bool(training)
    build = _array_dataset if dataset in ARRAY_DATASETS else _file_dataset
    if int(start_iteration) != start_iteration or start_iteration < 0:
        raise InputError("must be an integer >= 0, got %r" % (start_iteration,),
                         field="start_iteration")
    return build(prepared_dir, split, metadata, int(batch_size), bool(training), int(seed),
                 bool(drop_remainder), int(start_iteration))
