"""Image features from a keras.applications backbone: the model and the tf.data decoding pipeline.

The feature of an image is the backbone's global-average-pooled last convolutional block
(ResNet-50: pool5, 2048 values), computed on the image decoded to RGB (0..255), resized to
the backbone's input size when it has another size (bilinear, cleannet/image_input.py)
and passed through the backbone's own `preprocess_input`. The model is the
keras.applications model built with `include_top=False, pooling="avg"`, so a weights file
saved from that model (`model.save_weights("x.weights.h5")`) loads into it.

Backbones (name: keras.applications model, input side in pixels, feature dimension):
  resnet50            ResNet50          224  2048   (the paper's choice)
  efficientnet_v2_b0  EfficientNetV2B0  224  1280   (newer, about 4x fewer operations)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import tensorflow as tf

from cleannet.image_input import decode_rgb, preprocess_for, resize_if_needed
from noisylabels.downloads import refuse_offline
from noisylabels.errors import InputError

if TYPE_CHECKING:
    import keras


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A feature backbone: keras.applications constructor name, input side (px), feature size."""

    application: str
    image_size: int
    feature_dim: int


BACKBONES = {
    "resnet50": Backbone("ResNet50", 224, 2048),
    "efficientnet_v2_b0": Backbone("EfficientNetV2B0", 224, 1280),
}
MIN_IMAGE_SIZE = 32


def build_backbone(backbone: str, weights: str | None, image_size: int) -> keras.Model:
    """The keras.applications model without its top, global average pooling, float32.

    Args:
      backbone: a key of BACKBONES.
      weights: "imagenet" (Keras downloads its pretrained weights at the user's site), a
        path to a weights file saved from this model, or None (random, for tests).
      image_size: input side in pixels (at least MIN_IMAGE_SIZE).

    Returns:
      keras.Model: float32 [B, S, S, 3] preprocessed images → [B, feature_dim].

    Raises:
      InputError: unknown backbone, missing weights file, weights of another model, or
        "imagenet" weights that cannot be downloaded (noisylabels/downloads.py).
    """
    import keras

    if backbone not in BACKBONES:
        raise InputError("must be one of %s, got %r" % ("|".join(BACKBONES), backbone), field="--backbone")
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise InputError("file not found (expected 'imagenet' or a .weights.h5 file)", path=weights,
                         field="--weights")
    application = BACKBONES[backbone].application
    constructor = getattr(keras.applications, application)
    avoid = ("pass --weights=FILE.weights.h5 (weights saved from keras.applications.%s(include_top=False, "
             "pooling='avg')), or run once where Keras can download them (it keeps them in ~/.keras/models)"
             % application)
    try:
        with refuse_offline("the ImageNet weights of %s" % application, avoid, "--weights"):
            return constructor(include_top=False, weights=weights, pooling="avg",
                               input_shape=(image_size, image_size, 3))
    except (ValueError, OSError, KeyError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError("cannot load these weights into %s(include_top=False, pooling='avg') (%s)"
                         % (BACKBONES[backbone].application, first), path=weights, field="--weights") from None


def make_embed_function(model: keras.Model, backbone: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """A tf.function: float32 [B, S, S, 3] RGB 0..255 → float32 [B, feature_dim] features.

    preprocess_input runs inside it, i.e. on the accelerator when there is one.
    """
    preprocess = preprocess_for(backbone)

    @tf.function(reduce_retracing=True)
    def embed(images):
        return model(preprocess(images), training=False)

    return embed


def make_batch_dataset(batches: Callable[[], Iterator[tuple]], image_size: int, batch_size: int) -> tf.data.Dataset:
    """Decodes batches of images in a tf.data pipeline, in order, dropping unreadable images.

    Args:
      batches: a zero-argument function returning an iterator of (batch_number int,
        row_indices int64 [b], paths str [b]) with 1 <= b <= batch_size: the rows of the
        image list in this batch.
      image_size: the side images are resized to (when they have another size).
      batch_size: the largest b.

    Returns:
      tf.data.Dataset of (batch_number int64 [], row_indices int64 [k], images float32
      [k, S, S, 3] RGB 0..255) with the k <= b images of the batch that could be read and
      decoded (in list order); a batch none of whose images can be read yields nothing.
      The images of a batch are decoded in parallel and the next batch is prepared while
      the current one is used (prefetch).
    """
    signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.string))
    listed = tf.data.Dataset.from_generator(batches, output_signature=signature)

    def load(index, path):
        return index, resize_if_needed(tf.cast(decode_rgb(path), tf.float32), image_size)

    def decode_batch(number, indices, paths):
        images = tf.data.Dataset.from_tensor_slices((indices, paths))
        images = images.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
        return images.batch(batch_size).map(lambda i, x: (number, i, x))

    return listed.flat_map(decode_batch).prefetch(2)
