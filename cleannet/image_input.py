"""Image lists and the tf.data image pipeline of the classifier's image-list mode (cleannet/classifier/).

An image list is a UTF-8 text file, one image per line, three tab-separated columns:

    key<TAB>image/path<TAB>class_name

- key: the sample's key, the one inference.py --output_weights writes (weights are joined
  to the training images by it); unique within a list.
- image/path: relative to the image root (`--image_root`; default: the directory of the
  list file), or absolute. A relative path must stay inside the root: an absolute-looking
  or `..` path that leaves it is an error naming the list file and line.
- class_name: a name of the class list (the label, noisy for training, true for testing).

Blank lines are skipped. Images are decoded with `tf.io.decode_image` (JPEG, PNG, GIF,
BMP, WebP; 3 channels, RGB), resized to `image_size`×`image_size` (bilinear, 0..255
scale), passed through the backbone's `preprocess_input` (resnet50: caffe mode, BGR minus
the ImageNet mean; mobilenet_v2: scaled to [-1, 1]; small_cnn: divided by 255) and, for
training, mirrored left-right at random (seeded, stateless).
"""

import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from noisylabels.errors import InputError
from noisylabels.fileio import iter_text_lines
from noisylabels.unique_keys import UniqueKeys

from cleannet.choices import IMAGE_BACKBONES as BACKBONES
from cleannet.image_paths import resolve_image_path


class ImageList:
    """A read image list.

    Attributes:
      keys: list of N str.
      paths: list of N str, absolute (or root-joined) image paths.
      labels: int64 [N] class ids.
      line_numbers: list of N int, the 1-based line of each image in the list file.
      path: the list file.
    """

    def __init__(self, path: str, keys: list[str], paths: list[str], labels: np.ndarray,
                 line_numbers: list[int]) -> None:
        self.path = path
        self.keys = keys
        self.paths = paths
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        self.line_numbers = line_numbers

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, indices: Sequence[int]) -> "ImageList":
        """The rows `indices` (int sequence), in that order, as a new ImageList."""
        return ImageList(self.path, [self.keys[i] for i in indices], [self.paths[i] for i in indices],
                         self.labels[list(indices)], [self.line_numbers[i] for i in indices])


def read_image_list(path: str, class_names: Sequence[str], image_root: str | None = None) -> ImageList:
    """Reads an image list (module docstring).

    Args:
      path: the list file.
      class_names: the class list (class id = index).
      image_root: the directory relative paths are joined to; None: the list's directory.

    Returns:
      ImageList.

    Raises:
      InputError (path:line): not 3 columns, empty key, duplicate key, unknown class, a path
        leaving the root, an image file that does not exist.
    """
    if image_root is None:
        image_root = os.path.dirname(os.path.abspath(path))
    elif not os.path.isdir(image_root):
        raise InputError("not a directory: %s" % image_root, field="--image_root")
    class_to_id = {name: i for i, name in enumerate(class_names)}
    keys, paths, labels, numbers, seen = [], [], [], [], UniqueKeys(path)
    for number, text in iter_text_lines(path):  # a byte-order mark and CRLF are accepted
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 3:
            raise InputError("expected 3 tab-separated columns (key, image path, class name), "
                             "found %d" % len(fields), path=path, line=number)
        key, image_path, name = fields
        if not key:
            raise InputError("empty key", path=path, line=number, field="key")
        seen.add(key, number)
        if name not in class_to_id:
            raise InputError("class %r is not in the class list" % name, path=path, line=number,
                             field="class_name")
        if not image_path:
            raise InputError("empty image path", path=path, line=number, field="image_path")
        full = resolve_image_path(image_path, image_root, path, number)
        if not os.path.isfile(full):
            raise InputError("image file not found: %s" % full, path=path, line=number,
                             field="image_path")
        keys.append(key)
        paths.append(full)
        labels.append(class_to_id[name])
        numbers.append(number)
    return ImageList(path, keys, paths, labels, numbers)


def decode_rgb(path: str | tf.Tensor) -> tf.Tensor:
    """Reads and decodes one image file → uint8 [H, W, 3] (first frame of a GIF)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def find_unreadable(paths: Sequence[str]) -> list[int]:
    """Indices (sorted list of int) of the images that cannot be read or decoded.

    Decodes every image once, in parallel, in a tf.data pipeline.
    """
    if not paths:
        return []
    table = tf.constant(paths, dtype=tf.string)
    data = tf.data.Dataset.range(len(paths))
    data = data.map(lambda i: (i, tf.shape(decode_rgb(table[i]))[0]), num_parallel_calls=tf.data.AUTOTUNE)
    data = data.ignore_errors().batch(1024)
    readable = np.zeros(len(paths), bool)
    for indices, _ in data:
        readable[indices.numpy()] = True
    return [int(i) for i in np.flatnonzero(~readable)]


def check_readable(images: ImageList, skip_bad_images: bool = False) -> tuple[ImageList, int]:
    """Drops or reports the undecodable images of an ImageList.

    Returns:
      (ImageList of the readable images, number dropped).

    Raises:
      InputError naming the list file, line and image of the first unreadable image,
      unless skip_bad_images.
    """
    bad = find_unreadable(images.paths)
    if bad and not skip_bad_images:
        first = bad[0]
        raise InputError("cannot decode image %s (%d unreadable in this list; --skip_bad_images drops "
                         "them)" % (images.paths[first], len(bad)), path=images.path,
                         line=images.line_numbers[first], field="image_path")
    if not bad:
        return images, 0
    bad_set = set(bad)
    return images.subset([i for i in range(len(images)) if i not in bad_set]), len(bad)


# The keras.applications module whose preprocess_input each backbone uses.
PREPROCESS_MODULES = {"resnet50": "resnet50", "mobilenet_v2": "mobilenet_v2",
                      "efficientnet_v2_b0": "efficientnet_v2"}


def preprocess_for(backbone: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The backbone's input transform: float32 [..., 3] RGB 0..255 → the backbone's scale.

    resnet50: caffe mode (BGR minus the ImageNet mean); mobilenet_v2: scaled to [-1, 1];
    efficientnet_v2_b0: unchanged (the model rescales its input itself); small_cnn: / 255.
    """
    import keras

    if backbone == "small_cnn":
        return lambda x: x / 255.0
    if backbone not in PREPROCESS_MODULES:
        names = sorted(set(BACKBONES) | set(PREPROCESS_MODULES))
        raise InputError("must be one of %s, got %r" % ("|".join(names), backbone), field="--backbone")
    return getattr(keras.applications, PREPROCESS_MODULES[backbone]).preprocess_input


def resize_if_needed(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """float32 [H, W, 3] → [image_size, image_size, 3]: bilinear (0..255 scale, no
    antialiasing), and untouched when the image already has that size."""
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
    resized = tf.cond(same, lambda: image,
                      lambda: tf.image.resize(image, [image_size, image_size], method="bilinear"))
    return tf.ensure_shape(resized, [image_size, image_size, 3])


def shuffled_order(num: int, seed: int, epoch: int | tf.Tensor) -> tf.Tensor:
    """int64 [num]: a permutation of 0..num-1 drawn from (seed, epoch) alone, stateless.

    `epoch` may be an int or a scalar int64 tensor (e.g. read from a variable while a
    tf.data pipeline runs): the same (seed, epoch) gives the same order in any process, so
    a resumed run sees the epochs an uninterrupted one would.
    """
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(num, dtype=tf.int64), seed=key)


def make_image_dataset(paths: Sequence[str], labels: np.ndarray, weights: np.ndarray, image_size: int,
                       backbone: str, batch_size: int, training: bool, seed: int = 0,
                       epoch: int | tf.Tensor = 0) -> tf.data.Dataset:
    """A tf.data pipeline over images.

    Args:
      paths: list of N image file paths.
      labels: int64 [N] class ids.
      weights: float32 [N] sample weights.
      image_size: side of the square the images are resized to, in pixels.
      backbone: one of BACKBONES (chooses the preprocessing).
      batch_size: images per batch; the last batch may be partial.
      training: True: shuffled and mirrored left-right at random, both drawn from
        (seed, epoch): another order and other mirrors each epoch, the same ones when an
        epoch is rerun (after a restart); False: list order, no augmentation.
      seed: int; epoch: int or scalar int64 tensor.

    Returns:
      tf.data.Dataset of (images float32 [B, S, S, 3] preprocessed, labels int64 [B],
      weights float32 [B]).
    """
    preprocess = preprocess_for(backbone)
    table = tf.constant(paths, dtype=tf.string)
    labels = tf.constant(np.asarray(labels, np.int64))
    weights = tf.constant(np.asarray(weights, np.float32))
    positions = tf.range(len(paths), dtype=tf.int64)
    order = shuffled_order(len(paths), seed, epoch) if training else positions
    flip_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])

    def load(position, index):
        image = tf.image.resize(tf.cast(decode_rgb(table[index]), tf.float32), [image_size, image_size],
                                method="bilinear")
        if training:
            image = tf.image.stateless_random_flip_left_right(
                image, seed=tf.random.experimental.stateless_fold_in(flip_seed, position))
        return preprocess(image), labels[index], weights[index]

    data = tf.data.Dataset.from_tensor_slices((positions, order))
    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
