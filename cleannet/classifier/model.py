"""The classifier's Keras models: a head on features, or a CNN backbone with the same head on images."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from cleannet.choices import IMAGE_BACKBONES
from noisylabels.errors import InputError

if TYPE_CHECKING:
    import keras


def build_classifier(img_dim: int, num_classes: int, hidden_units: int, train_features: np.ndarray) -> keras.Model:
    """Keras model: standardisation → [dense hidden_units ReLU] → dense num_classes logits."""
    import keras

    normalizer = keras.layers.Normalization(axis=-1, name="standardize")
    normalizer.adapt(train_features)
    layers = [keras.Input((img_dim,)), normalizer]
    if hidden_units > 0:
        layers.append(keras.layers.Dense(hidden_units, activation="relu", name="hidden"))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name="classifier")


def _small_cnn(shape) -> keras.Model:
    """3 conv 3×3 ReLU layers of 32, 64, 64 filters, 2×2 max-pooling after the first two, global average."""
    import keras

    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
    ], name="small_cnn")


def _build_backbone(backbone: str, image_size: int, backbone_weights: str | None) -> keras.Model:
    """The backbone alone (global average pooling output), weights loaded; InputError if they do not fit."""
    import keras

    shape = (image_size, image_size, 3)
    try:
        if backbone == "resnet50":
            return keras.applications.ResNet50(include_top=False, weights=backbone_weights, input_shape=shape,
                                               pooling="avg")
        if backbone == "mobilenet_v2":
            return keras.applications.MobileNetV2(include_top=False, weights=backbone_weights,
                                                  input_shape=shape, pooling="avg")
        base = _small_cnn(shape)
        if backbone_weights is not None:
            base.load_weights(backbone_weights)
        return base
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise InputError("cannot load these weights into a %s backbone at --image_size=%d (%s)"
                         % (backbone, image_size, str(err).splitlines()[0] if str(err) else type(err).__name__),
                         path=backbone_weights, field="--backbone_weights") from None


def build_image_classifier(backbone: str, num_classes: int, image_size: int, hidden_units: int = 0,
                           backbone_weights: str | None = None, freeze_backbone: bool = False) -> keras.Model:
    """Keras model: backbone (global average pooling) → [dense hidden_units ReLU] → dense logits.

    Args:
      backbone: "resnet50" or "mobilenet_v2" (keras.applications, built with weights=None:
        nothing is downloaded) or "small_cnn" (3 conv 3×3 ReLU layers of 32, 64, 64 filters,
        2×2 max-pooling after the first two).
      num_classes: outputs.
      image_size: input side in pixels (≥ 32).
      hidden_units: units of the ReLU layer of the head; 0: none.
      backbone_weights: a Keras weights file for the backbone alone (e.g. the ImageNet
        "notop" weights of keras.applications), loaded as keras.applications loads its own;
        None: random initialisation.
      freeze_backbone: the backbone is not trained and runs in inference mode (batch
        normalisation statistics frozen); only the head learns.

    Returns:
      keras.Model: float32 [B, image_size, image_size, 3] preprocessed images → logits
      [B, num_classes].
    """
    import keras

    if backbone not in IMAGE_BACKBONES:
        raise InputError("must be one of %s, got %r" % ("|".join(IMAGE_BACKBONES), backbone), field="--backbone")
    if backbone_weights is not None and not os.path.isfile(backbone_weights):
        raise InputError("file not found", path=backbone_weights, field="--backbone_weights")
    base = _build_backbone(backbone, image_size, backbone_weights)
    base.trainable = not freeze_backbone
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = base(inputs, training=False) if freeze_backbone else base(inputs)
    if hidden_units > 0:
        x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="image_classifier")
