"""The networks of Xiao et al. (docs/originals.md#noisy-label-model-cifar-10-protocol and #noisy-label-model-clothing1m-protocol) with Caffe's layer names and semantics.

- `CifarQuick`: Caffe's cifar10_quick (clean-label net with L outputs, noise-type net
  with 3).
- `CaffeNet`: bvlc_reference_caffenet (AlexNet with pooling before LRN), 14 outputs for
  Clothing1M; `CaffeNetNoiseType`: the same convolutions with a 4096-1024-3 head.
- `JointModel`: both nets side by side on the same images.

Caffe details kept here:
- Pooling rounds the output size up: out = ceil((H − 3) / 2) + 1 (`CaffePooling2D`).
  Max pooling ignores the overhang; average pooling divides by the number of in-bounds
  elements of the window (Caffe's divisor with pad 0).
- LRN across channels b = a / (k + α/n Σ_{n neighbours} a²)^β with n = 5, α = 1e-4,
  β = 0.75, k = 1, i.e. TF's depth_radius 2, alpha 2e-5, bias 1.
- Grouped convolutions (conv2, conv4, conv5 of CaffeNet, 2 groups) keep one kernel
  [kh, kw, in/groups, out], the layout of Keras' `Conv2D(groups=2)`: output channels
  [g·out/groups, (g+1)·out/groups) see input channels [g·in/groups, (g+1)·in/groups).
  A Caffe blob [out, in/groups, kh, kw] maps onto it by transposing to (2, 3, 1, 0).
- Flattening before the first dense layer is Keras' H×W×C order; Caffe flattens C×H×W,
  so the importer permutes the rows of the first dense kernel (ip1 / fc6).
- Initial weights: Caffe's Gaussian fillers (not truncated) with the prototxt's std.
"""

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import keras
import tensorflow as tf

from noise_model.protocol import DATASETS, NUM_NOISE_TYPES
from noisylabels.errors import InputError



def _gaussian(stddev):
    return keras.initializers.RandomNormal(mean=0.0, stddev=stddev)


def _constant(value):
    return keras.initializers.Constant(value)


def caffe_pool_output_size(size: int, pool_size: int, stride: int) -> int:
    """Caffe's pooled size with pad 0: ceil((size − pool_size) / stride) + 1."""
    return int(math.ceil((size - pool_size) / stride)) + 1


class CaffePooling2D(keras.layers.Layer):
    """Caffe's MAX or AVE pooling (pad 0), whose output size rounds up.

    Input float [B, H, W, C]; output [B, ceil((H−k)/s)+1, ceil((W−k)/s)+1, C]. The input
    is padded at the bottom/right so that the last window exists: with −inf for MAX
    (the overhang never wins), with zeros for AVE and the sum divided by the number of
    in-bounds elements of each window (Caffe's divisor min(start + k, H) − start with
    pad 0). H and W must be known when the layer is called.
    """

    def __init__(self, pool_size: int = 3, strides: int = 2, mode: str = "max", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("max", "ave"):
            raise ValueError("mode must be 'max' or 'ave', got %r" % (mode,))
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.mode = mode

    def _padding(self, size):
        out = caffe_pool_output_size(size, self.pool_size, self.strides)
        return max(0, (out - 1) * self.strides + self.pool_size - size)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError("CaffePooling2D needs a static height and width, got %s"
                             % (inputs.shape,))
        paddings = [[0, 0], [0, self._padding(height)], [0, self._padding(width)], [0, 0]]
        window = [1, self.pool_size, self.pool_size, 1]
        stride = [1, self.strides, self.strides, 1]
        if self.mode == "max":
            padded = tf.pad(inputs, paddings, constant_values=-np.inf)
            return tf.nn.max_pool2d(padded, window, stride, "VALID")
        padded = tf.pad(inputs, paddings)
        pooled = tf.nn.avg_pool2d(padded, window, stride, "VALID")
        # Fraction of each window that lies inside the input: a constant [1, h, w, 1].
        inside = np.zeros((1, height + paddings[1][1], width + paddings[2][1], 1), np.float32)
        inside[:, :height, :width, :] = 1.0
        fraction = tf.nn.avg_pool2d(tf.constant(inside), window, stride, "VALID")
        return pooled / tf.cast(fraction, pooled.dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        batch, height, width, channels = input_shape
        return (batch, caffe_pool_output_size(height, self.pool_size, self.strides),
                caffe_pool_output_size(width, self.pool_size, self.strides), channels)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "strides": self.strides, "mode": self.mode})
        return config


class CaffeLRN(keras.layers.Layer):
    """Caffe's LRN across channels: b = a / (k + α/n Σ a²)^β over n neighbouring channels.

    Defaults are CaffeNet's (local_size n = 5, α = 1e-4, β = 0.75, k = 1). Input and
    output float [B, H, W, C].
    """

    def __init__(self, local_size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if local_size % 2 != 1:
            raise ValueError("local_size must be odd, got %d" % local_size)
        self.local_size = int(local_size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.local_response_normalization(
            inputs, depth_radius=(self.local_size - 1) // 2, bias=self.k,
            alpha=self.alpha / self.local_size, beta=self.beta)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"local_size": self.local_size, "alpha": self.alpha,
                       "beta": self.beta, "k": self.k})
        return config


class GroupedConv2D(keras.layers.Conv2D):
    """`Conv2D` whose groups run as separate convolutions on channel slices.

    Same weights as `keras.layers.Conv2D(groups=g)` (kernel [kh, kw, in/g, out], split
    along the output axis into g parts), but computed with plain `tf.nn.conv2d` calls,
    because Keras compiles grouped convolutions with XLA on every call.
    """

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        input_groups = tf.split(inputs, self.groups, axis=-1)
        kernel_groups = tf.split(kernel, self.groups, axis=-1)
        outputs = [
            tf.nn.conv2d(x, w, strides=list(self.strides), padding=self.padding.upper(),
                         dilations=list(self.dilation_rate))
            for x, w in zip(input_groups, kernel_groups)]
        return tf.concat(outputs, axis=-1)


class CifarQuick(keras.Model):
    """Caffe's CIFAR10-quick network.

    Input float32 [B, 32, 32, 3] (mean-subtracted); output logits [B, num_outputs].
    conv1 5×5/32 pad 2 → pool1 max 3/2 → ReLU → conv2 5×5/32 pad 2 → ReLU → pool2 ave
    3/2 → conv3 5×5/64 pad 2 → ReLU → pool3 ave 3/2 → ip1 dense 64 → ip2 dense
    num_outputs (no ReLU between ip1 and ip2). Spatial sizes 32 → 16 → 8 → 4.
    Init: Gaussian std 1e-4 (conv1), 0.01 (conv2, conv3), 0.1 (ip1, ip2); biases 0.
    """

    def __init__(self, num_outputs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_outputs = int(num_outputs)
        self.conv1 = keras.layers.Conv2D(32, 5, padding="same", name="conv1",
                                         kernel_initializer=_gaussian(1e-4))
        self.pool1 = CaffePooling2D(3, 2, "max", name="pool1")
        self.conv2 = keras.layers.Conv2D(32, 5, padding="same", name="conv2",
                                         kernel_initializer=_gaussian(0.01))
        self.pool2 = CaffePooling2D(3, 2, "ave", name="pool2")
        self.conv3 = keras.layers.Conv2D(64, 5, padding="same", name="conv3",
                                         kernel_initializer=_gaussian(0.01))
        self.pool3 = CaffePooling2D(3, 2, "ave", name="pool3")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.ip1 = keras.layers.Dense(64, name="ip1", kernel_initializer=_gaussian(0.1))
        self.ip2 = keras.layers.Dense(self.num_outputs, name="ip2",
                                      kernel_initializer=_gaussian(0.1))

    def features(self, x: tf.Tensor) -> tf.Tensor:
        """float32 [B, 32, 32, 3] → the [B, 4, 4, 64] map before the dense layers."""
        x = tf.nn.relu(self.pool1(self.conv1(x)))
        x = self.pool2(tf.nn.relu(self.conv2(x)))
        return self.pool3(tf.nn.relu(self.conv3(x)))

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.ip2(self.ip1(self.flatten(self.features(x))))

    def get_config(self) -> dict:
        return {"num_outputs": self.num_outputs, "name": self.name}


class _CaffeNetConvs(keras.Model):
    """conv1..conv5 of bvlc_reference_caffenet (shared by the clean and noise-type nets).

    Init: Gaussian std 0.01 for every conv; biases 0 for conv1 and conv3, 1 for conv2,
    conv4 and conv5 (as bvlc_reference_caffenet).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        conv_init = _gaussian(0.01)
        self.conv1 = keras.layers.Conv2D(96, 11, strides=4, padding="valid", name="conv1",
                                         kernel_initializer=conv_init)
        self.pool1 = CaffePooling2D(3, 2, "max", name="pool1")
        self.norm1 = CaffeLRN(name="norm1")
        self.conv2 = GroupedConv2D(256, 5, padding="same", groups=2, name="conv2",
                                   kernel_initializer=conv_init, bias_initializer=_constant(1.0))
        self.pool2 = CaffePooling2D(3, 2, "max", name="pool2")
        self.norm2 = CaffeLRN(name="norm2")
        self.conv3 = keras.layers.Conv2D(384, 3, padding="same", name="conv3",
                                         kernel_initializer=conv_init)
        self.conv4 = GroupedConv2D(384, 3, padding="same", groups=2, name="conv4",
                                   kernel_initializer=conv_init, bias_initializer=_constant(1.0))
        self.conv5 = GroupedConv2D(256, 3, padding="same", groups=2, name="conv5",
                                   kernel_initializer=conv_init, bias_initializer=_constant(1.0))
        self.pool5 = CaffePooling2D(3, 2, "max", name="pool5")
        self.flatten = keras.layers.Flatten(name="flatten")

    def features(self, x: tf.Tensor) -> tf.Tensor:
        """float32 [B, 227, 227, 3] → pool5 [B, 6, 6, 256] (55 → 27 → 13 → 6)."""
        x = self.norm1(self.pool1(tf.nn.relu(self.conv1(x))))
        x = self.norm2(self.pool2(tf.nn.relu(self.conv2(x))))
        x = tf.nn.relu(self.conv3(x))
        x = tf.nn.relu(self.conv4(x))
        return self.pool5(tf.nn.relu(self.conv5(x)))


class CaffeNet(_CaffeNetConvs):
    """bvlc_reference_caffenet for Clothing1M.

    Input float32 [B, 227, 227, 3] RGB mean-subtracted; output logits [B, num_outputs].
    convs (see `_CaffeNetConvs`) → fc6 4096 → ReLU → dropout → fc7 4096 → ReLU →
    dropout → fc8 num_outputs. Init: fc6, fc7 Gaussian std 0.005 with bias 1; fc8 std
    0.01 with bias 0.
    """

    def __init__(self, num_outputs: int = 14, dropout_rate: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_outputs = int(num_outputs)
        self.dropout_rate = float(dropout_rate)
        self.fc6 = keras.layers.Dense(4096, name="fc6", kernel_initializer=_gaussian(0.005),
                                      bias_initializer=_constant(1.0))
        self.drop6 = keras.layers.Dropout(self.dropout_rate, name="drop6")
        self.fc7 = keras.layers.Dense(4096, name="fc7", kernel_initializer=_gaussian(0.005),
                                      bias_initializer=_constant(1.0))
        self.drop7 = keras.layers.Dropout(self.dropout_rate, name="drop7")
        self.fc8 = keras.layers.Dense(self.num_outputs, name="fc8",
                                      kernel_initializer=_gaussian(0.01))

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = self.flatten(self.features(x))
        x = self.drop6(tf.nn.relu(self.fc6(x)), training=training)
        x = self.drop7(tf.nn.relu(self.fc7(x)), training=training)
        return self.fc8(x)

    def get_config(self) -> dict:
        return {"num_outputs": self.num_outputs, "dropout_rate": self.dropout_rate,
                "name": self.name}


class CaffeNetNoiseType(_CaffeNetConvs):
    """The Clothing1M noise-type net: CaffeNet's convs, fc6 4096, fc7_ntype 1024, fc8_ntype 3.

    Input float32 [B, 227, 227, 3]; output logits [B, 3]. Init: fc6 and fc7_ntype
    Gaussian std 0.005 with bias 1; fc8_ntype std 0.01 with bias 0 (as CaffeNet's
    corresponding layers).
    """

    def __init__(self, dropout_rate: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dropout_rate = float(dropout_rate)
        self.fc6 = keras.layers.Dense(4096, name="fc6", kernel_initializer=_gaussian(0.005),
                                      bias_initializer=_constant(1.0))
        self.drop6 = keras.layers.Dropout(self.dropout_rate, name="drop6")
        self.fc7_ntype = keras.layers.Dense(1024, name="fc7_ntype",
                                            kernel_initializer=_gaussian(0.005),
                                            bias_initializer=_constant(1.0))
        self.drop7 = keras.layers.Dropout(self.dropout_rate, name="drop7")
        self.fc8_ntype = keras.layers.Dense(NUM_NOISE_TYPES, name="fc8_ntype",
                                            kernel_initializer=_gaussian(0.01))

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = self.flatten(self.features(x))
        x = self.drop6(tf.nn.relu(self.fc6(x)), training=training)
        x = self.drop7(tf.nn.relu(self.fc7_ntype(x)), training=training)
        return self.fc8_ntype(x)

    def get_config(self) -> dict:
        return {"dropout_rate": self.dropout_rate, "name": self.name}


def image_size(dataset: str) -> int:
    """Input side length of the dataset's networks: 32 (cifar10, digits) or 227."""
    _check_dataset(dataset)
    return 227 if dataset == "clothing1m" else 32


def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise InputError("unknown dataset %r, expected one of %s" % (dataset, ", ".join(DATASETS)),
                         field="dataset")


def build_model(model: keras.Model, size: int) -> keras.Model:
    """Creates `model`'s weights by calling it once on zeros [1, size, size, 3]."""
    model(tf.zeros([1, size, size, 3], tf.float32), training=False)
    return model


def build_clean_model(dataset: str, num_classes: int) -> keras.Model:
    """The clean-label net of `dataset` with `num_classes` outputs, built (weights exist).

    cifar10 and digits: `CifarQuick(num_classes)` named "clean_net"; clothing1m:
    `CaffeNet(num_classes)` named "clean_net".
    """
    _check_dataset(dataset)
    if dataset == "clothing1m":
        model = CaffeNet(num_classes, name="clean_net")
    else:
        model = CifarQuick(num_classes, name="clean_net")
    return build_model(model, image_size(dataset))


def build_ntype_model(dataset: str) -> keras.Model:
    """The noise-type net of `dataset` (3 outputs), built: CifarQuick(3) or CaffeNetNoiseType."""
    _check_dataset(dataset)
    if dataset == "clothing1m":
        model = CaffeNetNoiseType(name="ntype_net")
    else:
        model = CifarQuick(NUM_NOISE_TYPES, name="ntype_net")
    return build_model(model, image_size(dataset))


class JointModel(keras.Model):
    """The clean-label net and the noise-type net applied to the same images.

    `call(x, training=False)` → `(clean_logits [B, L], ntype_logits [B, 3])`.
    """

    def __init__(self, clean_model: keras.Model, ntype_model: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clean_net = clean_model
        self.ntype_net = ntype_model

    def call(self, x: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        return self.clean_net(x, training=training), self.ntype_net(x, training=training)


def build_stage_net(dataset: str, kind: str, num_classes: int, image_size: int) -> keras.Model:
    """Builds (creates the weights of) a training stage's model.

    Args:
      dataset: "cifar10", "digits" or "clothing1m".
      kind: "clean" (build_clean_model), "ntype" (build_ntype_model) or "joint"
        (a JointModel of the two); protocol.STAGE_NET names a stage's kind.
      num_classes: L, the number of clean-label classes.
      image_size: the network input side (32 or 227).

    Returns:
      The Keras model, called once on zeros [1, image_size, image_size, 3].
    """
    if kind == "clean":
        model = build_clean_model(dataset, num_classes)
    elif kind == "ntype":
        model = build_ntype_model(dataset)
    elif kind == "joint":
        model = JointModel(build_clean_model(dataset, num_classes), build_ntype_model(dataset))
    else:
        raise ValueError("unknown net kind %r" % kind)
    return build_model(model, image_size)


def copy_matching_weights(source_model: keras.Model, target_model: keras.Model,
                          layer_names: Iterable[str] | None = None) -> list[str]:
    """Caffe's copy-by-name: copies each layer whose name and weight shapes match.

    Looks at the direct layers of both models (for a `JointModel`, pass its `clean_net`
    or `ntype_net`). A layer is copied when the source has a layer of the same name with
    the same number of weights and the same shape for each; layers without weights are
    skipped. Both models must be built.

    Args:
      source_model, target_model: built Keras models.
      layer_names: optional iterable of names to restrict the copy to.

    Returns:
      The names of the copied layers, in the target's layer order.
    """
    for model in (source_model, target_model):
        if not model.built or not model.weights:
            raise ValueError("model %r is not built: call it once on a batch first" % model.name)
    wanted = None if layer_names is None else set(layer_names)
    source_layers = {layer.name: layer for layer in source_model.layers}
    copied = []
    for layer in target_model.layers:
        if wanted is not None and layer.name not in wanted:
            continue
        source = source_layers.get(layer.name)
        if source is None or not layer.weights:
            continue
        if len(source.weights) != len(layer.weights):
            continue
        if any(tuple(s.shape) != tuple(t.shape) for s, t in zip(source.weights, layer.weights)):
            continue
        for s, t in zip(source.weights, layer.weights):
            t.assign(s)
        copied.append(layer.name)
    return copied


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of `model`'s convolution layers, in order (e.g. conv1, conv2, conv3)."""
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
