"""Import a Caffe `.caffemodel` into our Keras models, without Caffe installed.

`load_caffemodel(path)` parses the `caffe.NetParameter` protobuf (schema in
`caffe_proto.py`; both the current `layer` and the legacy V1 `layers` field) and returns
the parameter blobs of every layer by name, in Caffe's layouts.

`import_into(model, blobs, keep_bgr=False)` copies them into a built `CifarQuick`,
`CaffeNet` or `CaffeNetNoiseType` by layer name (Caffe's copy-by-name):
- convolutions: Caffe [out, in/groups, kh, kw] → Keras [kh, kw, in/groups, out]. Our
  grouped convolutions (CaffeNet conv2, conv4, conv5) keep Keras' `Conv2D(groups=2)`
  layout, whose output channels are ordered by group exactly as Caffe's, so the same
  transpose applies.
- dense layers: Caffe [out, in] → Keras [in, out]. The first dense layer after the
  convolutions (CaffeNet fc6, CifarQuick ip1) sees a flattened feature map: Caffe
  flattens it C×H×W, Keras H×W×C, so its input rows are reordered.
- biases: [out] (legacy 4-D [1, 1, 1, out] blobs are accepted).
- colour order: the ImageNet-pretrained CaffeNet was trained on BGR images (OpenCV's
  order). By default conv1's input-channel axis of a CaffeNet / CaffeNetNoiseType is
  reversed so that the Keras model takes RGB images, as our input pipeline produces;
  `keep_bgr=True` (`--keep_bgr`) leaves it as it is. CifarQuick is never flipped: Caffe's
  CIFAR-10 data (convert_cifar_data) keeps the files' RGB order.
Keras layers without a blob of the same name keep their weights; blobs without a Keras
layer of that name are ignored (both are logged). A blob whose shape does not fit its
layer is an InputError naming the layer (exclude such a layer, e.g. ImageNet's 1000-way
fc8, or import with --num_outputs=1000 and let the training script skip it by shape).

Command line:
  python -m noise_model.import_caffemodel --caffemodel=bvlc_reference_caffenet.caffemodel \
      --model=caffenet --output=caffenet.weights.h5 [--num_outputs=N] [--keep_bgr]
      [--exclude_layers=fc8]
writes the built Keras model's weights (`model.save_weights`, atomically); load them with
`model.load_weights(path, skip_mismatch=True)` into a model of the same class.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from absl import flags, logging
from google.protobuf import message as protobuf_message

from noise_model import caffe_proto
from noisylabels.errors import InputError, check_flag
from noisylabels.flagutil import run_tool
from noisylabels.fileio import atomic_path, refuse_output_equal_to_inputs

if TYPE_CHECKING:  # for the type hints only: TensorFlow is loaded after the inputs are checked
    import keras

# TensorFlow, Keras and noise_model.models are imported inside the functions that use them:
# the command line checks its flags and reads the caffemodel first, then loads TensorFlow
# quietly (noisylabels.console.load_tensorflow).

MODEL_CHOICES = ("caffenet", "caffenet_ntype", "cifar_quick")
WEIGHTS_SUFFIX = ".weights.h5"


# ---------------------------------------------------------------------------------------
# Reading the caffemodel.


def blob_to_array(blob: protobuf_message.Message, layer_name: str, path: str) -> np.ndarray:
    """A BlobProto → float32 array in the blob's own shape.

    The shape is `shape.dim` when present, else the legacy (num, channels, height, width)
    when any of them is set, else 1-D. Values come from `data`, or `double_data` when
    `data` is empty. A dimension below 1, a shape whose size (computed exactly, without
    overflow) differs from the number of values, or a nan / inf value is an InputError
    naming the layer.
    """
    field = _layer_field(layer_name)
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif blob.num or blob.channels or blob.height or blob.width:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = None
    if len(blob.data):
        values = np.array(blob.data, dtype=np.float32)
    else:
        with np.errstate(over="ignore"):
            values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    if not np.isfinite(values).all():
        raise InputError("blob value %d is nan or inf (or beyond the float32 range)"
                         % np.flatnonzero(~np.isfinite(values))[0], path=path, field=field)
    if shape is None:
        return values
    if any(d < 1 for d in shape):
        raise InputError("blob shape %s has a dimension below 1" % list(shape), path=path, field=field)
    size = math.prod(shape)  # Python integers: a huge shape cannot wrap around
    if size != values.size:
        raise InputError("blob shape %s holds %d values, found %d" % (list(shape), size, values.size),
                         path=path, field=field)
    return values.reshape(shape)


def load_caffemodel(path: str) -> dict[str, list[np.ndarray]]:
    """Reads the parameter blobs of a `.caffemodel`.

    Returns:
      dict layer name → list of float32 arrays in Caffe's layout (e.g. a convolution's
      [weights [out, in/groups, kh, kw], bias [out]]), in file order; layers without
      blobs are left out. Layers from the `layer` field come first, then legacy `layers`;
      a name seen twice keeps its first blobs.
    """
    if not os.path.isfile(path):
        raise InputError("file not found", path=path, field="--caffemodel")
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as err:
        raise InputError("cannot read (%s)" % (err.strerror or err), path=path, field="--caffemodel") from None
    net = caffe_proto.NetParameter()
    try:
        net.ParseFromString(content)
    except (protobuf_message.DecodeError, RuntimeError, ValueError) as err:
        raise InputError("not a readable Caffe NetParameter protobuf (%s)" % err, path=path) from None
    entries = [(layer.name, layer.type, layer.blobs) for layer in net.layer]
    entries += [(layer.name, caffe_proto.v1_type_name(layer.type), layer.blobs)
                for layer in net.layers]
    blobs = {}
    for name, layer_type, layer_blobs in entries:
        if not layer_blobs:
            continue
        if not isinstance(name, str):  # protobuf hands over a name that is not UTF-8 as bytes
            raise InputError("layer name %r is not valid UTF-8" % name, path=path)
        if name in blobs:
            logging.warning("%s: layer '%s' appears twice; keeping the first", path, name)
            continue
        blobs[name] = [blob_to_array(blob, name, path) for blob in layer_blobs]
        logging.info("Caffe layer %s (%s): blobs %s", name, layer_type,
                     [list(a.shape) for a in blobs[name]])
    if not blobs:
        raise InputError("no layer with parameter blobs found (is this a .caffemodel, not a "
                         ".prototxt?)", path=path)
    return blobs


# ---------------------------------------------------------------------------------------
# Converting to Keras layouts.


def _layer_field(name: str) -> str:
    return "layer %s" % name


def _fit_shape(array: np.ndarray, shape: Sequence[int], layer_name: str, what: str) -> np.ndarray:
    """Reshapes a Caffe array to `shape` when only leading 1s differ (legacy 4-D blobs)."""
    squeezed = array.shape
    while len(squeezed) > len(shape) and squeezed[0] == 1:
        squeezed = squeezed[1:]
    if tuple(squeezed) != tuple(shape):
        raise InputError("Caffe %s has shape %s, the Keras layer needs %s (in Caffe's layout)"
                         % (what, list(array.shape), list(shape)), field=_layer_field(layer_name))
    return array.reshape(shape)


def convert_conv_kernel(weights: np.ndarray) -> np.ndarray:
    """Caffe [out, in/groups, kh, kw] → Keras [kh, kw, in/groups, out] (grouped or not)."""
    return np.ascontiguousarray(np.transpose(weights, (2, 3, 1, 0)))


def convert_dense_kernel(weights: np.ndarray,
                         input_hwc: Optional[tuple[int, int, int]] = None) -> np.ndarray:
    """Caffe [out, in] → Keras [in, out].

    Args:
      weights: float [out, in].
      input_hwc: (H, W, C) when the layer's input is a flattened H×W×C feature map; the
        rows are then reordered from Caffe's C×H×W flattening to Keras' H×W×C.
    """
    out_dim = weights.shape[0]
    if input_hwc is None:
        return np.ascontiguousarray(weights.T)
    height, width, channels = input_hwc
    reordered = weights.reshape(out_dim, channels, height, width).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(reordered.reshape(height * width * channels, out_dim))


def _is_conv(layer: keras.layers.Layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.Conv2D)


def _is_dense(layer: keras.layers.Layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.Dense)


def _flatten_input_hwc(model: keras.Model) -> tuple[Optional[str], Optional[tuple[int, int, int]]]:
    """(name of the first dense layer, its input (H, W, C)) for a conv-then-dense model."""
    convs = [layer for layer in model.layers if _is_conv(layer)]
    denses = [layer for layer in model.layers if _is_dense(layer)]
    if not convs or not denses:
        return None, None
    channels = int(convs[-1].filters)
    in_dim = int(denses[0].kernel.shape[0])
    side = int(round(np.sqrt(in_dim // channels)))
    if side * side * channels != in_dim:
        raise ValueError("cannot factor %s's input %d as H×W×%d" % (denses[0].name, in_dim, channels))
    return denses[0].name, (side, side, channels)


def _flips_bgr(model: keras.Model) -> bool:
    """True for the CaffeNet-family models (ImageNet weights expect BGR), False otherwise."""
    from noise_model import models

    return not isinstance(model, models.CifarQuick)


def convert_layer(layer: keras.layers.Layer, caffe_blobs: Sequence[np.ndarray],
                  input_hwc: Optional[tuple[int, int, int]] = None,
                  flip_input_channels: bool = False) -> list[np.ndarray]:
    """Converts one layer's Caffe blobs to the Keras layer's weight list.

    Raises:
      InputError naming the layer: wrong number of blobs or shapes that do not fit.
    """
    name = layer.name
    targets = [tuple(int(d) for d in w.shape) for w in layer.weights]
    if len(caffe_blobs) != len(targets):
        raise InputError("Caffe has %d blobs, the Keras layer %d weights"
                         % (len(caffe_blobs), len(targets)), field=_layer_field(name))
    kernel_shape = targets[0]
    if _is_conv(layer):
        kh, kw, in_per_group, out = kernel_shape
        weights = _fit_shape(caffe_blobs[0], (out, in_per_group, kh, kw), name, "weights")
        if flip_input_channels:
            weights = weights[:, ::-1, :, :]
        kernel = convert_conv_kernel(weights)
    elif _is_dense(layer):
        in_dim, out = kernel_shape
        weights = _fit_shape(caffe_blobs[0], (out, in_dim), name, "weights")
        kernel = convert_dense_kernel(weights, input_hwc)
    else:
        raise InputError("only convolution and dense layers can be imported",
                         field=_layer_field(name))
    converted = [kernel.astype(np.float32)]
    if len(targets) > 1:
        converted.append(_fit_shape(caffe_blobs[1], (out,), name, "bias").astype(np.float32))
    return converted


def import_into(model: keras.Model, blobs: Mapping[str, Sequence[np.ndarray]], keep_bgr: bool = False,
                exclude: Collection[str] = ()) -> list[str]:
    """Copies Caffe blobs into a built Keras model by layer name.

    Args:
      model: a built CifarQuick, CaffeNet or CaffeNetNoiseType (called once on a batch).
      blobs: dict name → list of Caffe-layout arrays (load_caffemodel).
      keep_bgr: leave CaffeNet's conv1 in Caffe's BGR input order (default: flip to RGB).
      exclude: layer names not to copy.

    Returns:
      The names of the copied layers, in the model's layer order.

    Raises:
      InputError naming the layer: blobs that do not fit.
    """
    if not model.built or not model.weights:
        raise ValueError("model %r is not built: call it once on a batch first" % model.name)
    first_dense, input_hwc = _flatten_input_hwc(model)
    convs = [layer.name for layer in model.layers if _is_conv(layer)]
    flip_layer = convs[0] if convs and not keep_bgr and _flips_bgr(model) else None
    # Convert every layer first, so that a mismatch leaves the model untouched.
    converted, kept = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in blobs or layer.name in exclude:
            kept.append(layer.name)
            continue
        converted.append((layer, convert_layer(
            layer, blobs[layer.name], input_hwc=input_hwc if layer.name == first_dense else None,
            flip_input_channels=layer.name == flip_layer)))
    for layer, weights in converted:
        layer.set_weights(weights)
    copied = [layer.name for layer, _ in converted]
    unused = [name for name in blobs if name not in copied and name not in exclude]
    logging.info("Copied %s; kept the initial weights of %s; Caffe layers not used: %s",
                 copied, kept, unused)
    if flip_layer in copied:
        logging.info("Reversed %s's input channels: the model takes RGB images", flip_layer)
    return copied


# ---------------------------------------------------------------------------------------
# Command line.


def build_model(model_name: str, num_outputs: Optional[int]) -> keras.Model:
    """Builds one of our models (weights created by a call on zeros)."""
    import tensorflow as tf

    from noise_model import models

    if model_name == "cifar_quick":
        model, size = models.CifarQuick(num_outputs), 32
    elif model_name == "caffenet":
        model, size = models.CaffeNet(num_outputs), 227
    else:
        model, size = models.CaffeNetNoiseType(), 227
    model(tf.zeros([1, size, size, 3], tf.float32), training=False)
    return model


def infer_num_outputs(model_name: str, blobs: Mapping[str, Sequence[np.ndarray]]) -> Optional[int]:
    """The output count of the caffemodel's last layer (fc8 / ip2), or None."""
    last = {"caffenet": "fc8", "cifar_quick": "ip2"}.get(model_name)
    if last in blobs:
        return int(blobs[last][0].shape[-2] if blobs[last][0].ndim >= 2 else blobs[last][0].shape[0])
    return None


def save_weights(model: keras.Model, output: str) -> None:
    """model.save_weights(output) through a temporary file renamed into place."""
    with atomic_path(output) as tmp:
        staging = tmp + WEIGHTS_SUFFIX  # Keras insists on the suffix.
        try:
            model.save_weights(staging)
            os.replace(staging, tmp)
        finally:
            if os.path.exists(staging):
                os.remove(staging)


def define_flags() -> None:
    flags.DEFINE_string("caffemodel", None, "The .caffemodel file.", required=True)
    flags.DEFINE_enum("model", None, list(MODEL_CHOICES), "Target model: caffenet, caffenet_ntype or cifar_quick.",
                      required=True)
    flags.DEFINE_integer("num_outputs", None, "Outputs of the last layer (caffenet, "
                         "cifar_quick); default: that of the caffemodel's fc8 / ip2.", lower_bound=1)
    flags.DEFINE_string("output", None, "Keras weights file to write (must end in %s)." % WEIGHTS_SUFFIX,
                        required=True)
    flags.register_validator("output", lambda value: value is None or value.endswith(WEIGHTS_SUFFIX),
                             message="must be a path ending in %s" % WEIGHTS_SUFFIX)
    flags.DEFINE_bool("keep_bgr", False, "Keep CaffeNet's conv1 in Caffe's BGR input order "
                      "(default: reverse it so the model takes RGB).")
    flags.DEFINE_list("exclude_layers", [], "Layer names not to copy (e.g. fc8).")


def main(argv: list[str]) -> None:
    del argv
    FLAGS = flags.FLAGS
    refuse_output_equal_to_inputs({"output": FLAGS.output}, [("--caffemodel", FLAGS.caffemodel)])
    blobs = load_caffemodel(FLAGS.caffemodel)
    num_outputs = FLAGS.num_outputs
    if num_outputs is None and FLAGS.model != "caffenet_ntype":
        num_outputs = infer_num_outputs(FLAGS.model, blobs)
        check_flag(num_outputs is not None, "num_outputs",
                   "is required: the caffemodel has no layer to infer it from")
    from noisylabels.console import load_tensorflow

    load_tensorflow()  # after the flags and the caffemodel are checked
    model = build_model(FLAGS.model, num_outputs)
    try:
        copied = import_into(model, blobs, keep_bgr=FLAGS.keep_bgr, exclude=FLAGS.exclude_layers)
    except InputError as err:
        raise InputError(err.message + " (pass --exclude_layers=NAME to keep a layer's initial "
                         "weights)", path=FLAGS.caffemodel, field=err.field) from None
    check_flag(bool(copied), "model", "no layer of the caffemodel matches a layer of %s by name"
               % FLAGS.model)
    save_weights(model, FLAGS.output)
    logging.info("Wrote %s (%d layers imported)", FLAGS.output, len(copied))


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
