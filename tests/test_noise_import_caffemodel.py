"""Reading a .caffemodel without Caffe and importing it into our Keras models.

The test writes its caffemodels with its own protobuf wire-format encoder and the field
numbers of Caffe's caffe.proto, so the schema in caffe_proto.py is checked against them
rather than against itself. The imported CifarQuick is checked against a NumPy forward
pass with Caffe's semantics on the Caffe-layout arrays.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from noisylabels.console import is_noise
from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "noise_model", "import_caffemodel.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

# ---------------------------------------------------------------------------------------
# A minimal protobuf encoder (wire types 0 varint, 2 length-delimited, 5 fixed32).


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field, wire_type):
    return _varint(field << 3 | wire_type)


def _bytes_field(field, payload):
    return _key(field, 2) + _varint(len(payload)) + payload


def _string(field, text):
    return _bytes_field(field, text.encode())


def _varint_field(field, value):
    return _key(field, 0) + _varint(value)


def _fixed32_float(field, value):
    return _key(field, 5) + np.float32(value).tobytes()


def blob_new(array, as_double=False):
    """BlobProto with shape = 7 (BlobShape dim = 1, packed) and data = 5 (or double_data = 8)."""
    array = np.asarray(array)
    shape = _bytes_field(1, b"".join(_varint(d) for d in array.shape))
    values = (_bytes_field(8, array.astype("<f8").tobytes()) if as_double
              else _bytes_field(5, array.astype("<f4").tobytes()))
    return values + _bytes_field(7, shape)


def blob_legacy(array):
    """BlobProto with the legacy num = 1, channels = 2, height = 3, width = 4 (4-D)."""
    array = np.asarray(array)
    dims = (1,) * (4 - array.ndim) + array.shape
    header = b"".join(_varint_field(f, d) for f, d in zip((1, 2, 3, 4), dims))
    return header + _bytes_field(5, array.astype("<f4").tobytes())


def layer_new(name, layer_type, blobs):
    """LayerParameter: name = 1, type = 2, blobs = 7; plus fields the reader must skip."""
    body = _string(1, name) + _string(2, layer_type)
    body += _string(3, "bottom_blob") + _string(4, name)           # bottom, top
    body += _bytes_field(6, _fixed32_float(3, 1.0))                 # param { lr_mult: 1 }
    body += _fixed32_float(5, 0.0)                                  # loss_weight (fixed32)
    body += _bytes_field(106, _varint_field(1, 32))                 # convolution_param
    return body + b"".join(_bytes_field(7, blob) for blob in blobs)


def layer_v1(name, type_number, blobs):
    """V1LayerParameter: name = 4, type = 5 (enum), blobs = 6; plus skipped fields."""
    body = _string(2, "bottom_blob") + _string(3, name) + _string(4, name)
    body += _varint_field(5, type_number) + _fixed32_float(7, 1.0)  # blobs_lr
    return body + b"".join(_bytes_field(6, blob) for blob in blobs)


def write_net_new(path, layers):
    content = _string(1, "test_net") + b"".join(_bytes_field(100, layer) for layer in layers)
    with open(path, "wb") as f:
        f.write(content)


def write_net_v1(path, layers):
    content = _string(1, "test_net") + b"".join(_bytes_field(2, layer) for layer in layers)
    with open(path, "wb") as f:
        f.write(content)


# ---------------------------------------------------------------------------------------
# CIFAR10-quick in Caffe's layout, and its forward pass in NumPy with Caffe's semantics.


def cifar_quick_blobs(num_outputs=10, seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    return {
        "conv1": [normal(32, 3, 5, 5, std=0.2), normal(32, std=0.1)],
        "conv2": [normal(32, 32, 5, 5, std=0.05), normal(32, std=0.1)],
        "conv3": [normal(64, 32, 5, 5, std=0.05), normal(64, std=0.1)],
        "ip1": [normal(64, 64 * 4 * 4, std=0.05), normal(64, std=0.1)],
        "ip2": [normal(num_outputs, 64, std=0.2), normal(num_outputs, std=0.1)],
    }


def caffe_conv(x, weights, bias, pad, stride=1, groups=1):
    """x [N, C, H, W], weights [O, C/groups, kh, kw] → [N, O, H', W'] (cross-correlation)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = weights.shape[2:]
    outputs = []
    for xg, wg in zip(np.split(x, groups, axis=1), np.split(weights, groups, axis=0)):
        windows = np.lib.stride_tricks.sliding_window_view(xg, (kh, kw), axis=(2, 3))
        windows = windows[:, :, ::stride, ::stride]
        outputs.append(np.einsum("nchwij,ocij->nohw", windows, wg, optimize=True))
    return np.concatenate(outputs, axis=1) + bias[None, :, None, None]


def caffe_pool(x, mode, kernel=3, stride=2):
    """Caffe pooling, pad 0: output ceil((H − k) / s) + 1; windows clipped at the border,
    AVE divided by the clipped window size."""
    n, c, h, w = x.shape
    out_h = -(-(h - kernel) // stride) + 1
    out_w = -(-(w - kernel) // stride) + 1
    out = np.zeros((n, c, out_h, out_w), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride:min(i * stride + kernel, h), j * stride:min(j * stride + kernel, w)]
            out[:, :, i, j] = window.max(axis=(2, 3)) if mode == "max" else window.mean(axis=(2, 3))
    return out


def caffe_cifar_quick_forward(blobs, images_nhwc):
    x = images_nhwc.transpose(0, 3, 1, 2).astype(np.float64)
    x = caffe_conv(x, *blobs["conv1"], pad=2)
    x = np.maximum(caffe_pool(x, "max"), 0)
    x = caffe_pool(np.maximum(caffe_conv(x, *blobs["conv2"], pad=2), 0), "ave")
    x = caffe_pool(np.maximum(caffe_conv(x, *blobs["conv3"], pad=2), 0), "ave")
    assert x.shape[1:] == (64, 4, 4)
    x = x.reshape(len(x), -1)  # Caffe flattens C×H×W
    x = x @ blobs["ip1"][0].T + blobs["ip1"][1]
    return x @ blobs["ip2"][0].T + blobs["ip2"][1]


def _cifar_quick_layers(blobs, writer):
    layers = []
    for name, caffe_type, v1_type in (("conv1", "Convolution", 4), ("pool1", "Pooling", 17),
                                      ("relu1", "ReLU", 18), ("conv2", "Convolution", 4),
                                      ("conv3", "Convolution", 4), ("ip1", "InnerProduct", 14),
                                      ("ip2", "InnerProduct", 14), ("accuracy", "Accuracy", 1)):
        arrays = blobs.get(name, [])
        if writer == "new":
            encoded = [blob_new(a, as_double=(name == "ip2" and a.ndim == 1)) for a in arrays]
            layers.append(layer_new(name, caffe_type, encoded))
        else:
            layers.append(layer_v1(name, v1_type, [blob_legacy(a) for a in arrays]))
    return layers


@pytest.fixture(scope="module")
def quick_model_file(tmp_path_factory):
    blobs = cifar_quick_blobs()
    path = str(tmp_path_factory.mktemp("caffe") / "cifar10_quick.caffemodel")
    write_net_new(path, _cifar_quick_layers(blobs, "new"))
    return path, blobs


def _built_cifar_quick(num_outputs=10):
    import tensorflow as tf

    from noise_model.model import models

    model = models.CifarQuick(num_outputs)
    model(tf.zeros([1, 32, 32, 3]))
    return model


# ---------------------------------------------------------------------------------------
# Tests.


def test_load_caffemodel_new_format(quick_model_file):
    from noise_model.model import caffe_import

    path, blobs = quick_model_file
    loaded = caffe_import.load_caffemodel(path)
    assert list(loaded) == ["conv1", "conv2", "conv3", "ip1", "ip2"]  # no blob-less layers
    for name, arrays in blobs.items():
        assert len(loaded[name]) == len(arrays)
        for got, want in zip(loaded[name], arrays):
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_load_caffemodel_legacy_v1_format(tmp_path):
    from noise_model.model import caffe_import

    blobs = cifar_quick_blobs(seed=1)
    path = str(tmp_path / "legacy.caffemodel")
    write_net_v1(path, _cifar_quick_layers(blobs, "v1"))
    loaded = caffe_import.load_caffemodel(path)
    assert loaded["conv1"][0].shape == (32, 3, 5, 5)
    assert loaded["ip1"][0].shape == (1, 1, 64, 1024)  # legacy 4-D, as Caffe stored it
    np.testing.assert_array_equal(loaded["ip1"][0].reshape(64, 1024), blobs["ip1"][0])
    np.testing.assert_array_equal(loaded["ip2"][1].reshape(-1), blobs["ip2"][1])

    # Importing the legacy file gives the same Keras weights as the new-format arrays.
    legacy = _built_cifar_quick()
    caffe_import.import_into(legacy, loaded)
    direct = _built_cifar_quick()
    caffe_import.import_into(direct, blobs)
    for a, b in zip(legacy.get_weights(), direct.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_imported_cifar_quick_matches_caffe_forward(quick_model_file):
    from noise_model.model import caffe_import

    path, blobs = quick_model_file
    model = _built_cifar_quick()
    copied = caffe_import.import_into(model, caffe_import.load_caffemodel(path))
    assert copied == ["conv1", "conv2", "conv3", "ip1", "ip2"]
    images = np.random.default_rng(3).normal(0, 40, size=(2, 32, 32, 3)).astype(np.float32)
    expected = caffe_cifar_quick_forward(blobs, images)
    got = model(images).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    # The test can tell: without the C×H×W → H×W×C reordering of ip1 the output differs.
    model.get_layer("ip1").set_weights([blobs["ip1"][0].T, blobs["ip1"][1]])
    unordered = model(images).numpy()
    assert np.abs(unordered - expected).max() > 0.1 * np.abs(expected).max()


def test_shape_mismatch_names_the_layer(quick_model_file):
    from noise_model.model import caffe_import

    path, _ = quick_model_file
    model = _built_cifar_quick(num_outputs=5)
    before = model.get_weights()
    with pytest.raises(InputError, match="layer ip2") as err:
        caffe_import.import_into(model, caffe_import.load_caffemodel(path))
    assert "[10, 64]" in str(err.value)
    for a, b in zip(before, model.get_weights()):  # nothing copied on failure
        np.testing.assert_array_equal(a, b)
    copied = caffe_import.import_into(model, caffe_import.load_caffemodel(path),
                                           exclude=("ip2",))
    assert copied == ["conv1", "conv2", "conv3", "ip1"]


def test_not_a_caffemodel(tmp_path):
    from noise_model.model import caffe_import

    path = tmp_path / "net.prototxt"
    path.write_text('name: "CaffeNet"\nlayer { name: "conv1" }\n')
    with pytest.raises(InputError) as err:
        caffe_import.load_caffemodel(str(path))
    assert str(path) in str(err.value)


def test_caffenet_layout_fc6_grouped_convs_and_bgr():
    import tensorflow as tf

    from noise_model.model import caffe_import, models

    rng = np.random.default_rng(0)
    blobs = {
        "conv1": [rng.standard_normal((96, 3, 11, 11)).astype(np.float32),
                  rng.standard_normal(96).astype(np.float32)],
        "conv2": [rng.standard_normal((256, 48, 5, 5)).astype(np.float32),
                  rng.standard_normal(256).astype(np.float32)],
        "fc6": [rng.standard_normal((4096, 256 * 6 * 6)).astype(np.float32),
                rng.standard_normal(4096).astype(np.float32)],
    }
    model = models.CaffeNet(num_outputs=14)
    model(tf.zeros([1, 227, 227, 3]))
    copied = caffe_import.import_into(model, blobs)
    assert copied == ["conv1", "conv2", "fc6"]

    # fc6: Keras row (h·6 + w)·256 + c holds Caffe's column c·36 + h·6 + w.
    kernel = model.get_layer("fc6").get_weights()[0]
    assert kernel.shape == (9216, 4096)
    for h, w, c, o in [(0, 0, 0, 0), (0, 1, 0, 5), (2, 3, 100, 7), (5, 5, 255, 4095)]:
        assert kernel[(h * 6 + w) * 256 + c, o] == blobs["fc6"][0][o, c * 36 + h * 6 + w]
    np.testing.assert_array_equal(model.get_layer("fc6").get_weights()[1], blobs["fc6"][1])

    # conv1: input channels reversed (Caffe's BGR → our RGB).
    conv1 = model.get_layer("conv1").get_weights()[0]
    np.testing.assert_array_equal(conv1[:, :, 0, :], blobs["conv1"][0][:, 2].transpose(1, 2, 0))
    np.testing.assert_array_equal(conv1[:, :, 2, :], blobs["conv1"][0][:, 0].transpose(1, 2, 0))

    # conv2 (2 groups): the Keras layer computes Caffe's grouped convolution.
    x = rng.standard_normal((1, 7, 7, 96)).astype(np.float32)
    got = model.get_layer("conv2")(x).numpy()
    expected = caffe_conv(x.transpose(0, 3, 1, 2).astype(np.float64), *blobs["conv2"], pad=2,
                          groups=2).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)

    # --keep_bgr leaves conv1 as Caffe had it.
    model_bgr = models.CaffeNetNoiseType()
    model_bgr(tf.zeros([1, 227, 227, 3]))
    copied = caffe_import.import_into(model_bgr, {"conv1": blobs["conv1"]}, keep_bgr=True)
    assert copied == ["conv1"]
    np.testing.assert_array_equal(model_bgr.get_layer("conv1").get_weights()[0],
                                  blobs["conv1"][0].transpose(2, 3, 1, 0))


@pytest.mark.slow
def test_cli(quick_model_file, tmp_path):
    path, blobs = quick_model_file
    output = tmp_path / "quick.weights.h5"
    quiet_env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, SCRIPT, "--caffemodel=%s" % path,
                             "--model=cifar_quick", "--output=%s" % output],
                            capture_output=True, text=True, env=quiet_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if is_noise(line)], result.stderr
    assert os.listdir(tmp_path) == ["quick.weights.h5"]  # no temporary files left behind
    model = _built_cifar_quick()
    model.load_weights(str(output))
    images = np.random.default_rng(4).normal(0, 40, size=(2, 32, 32, 3)).astype(np.float32)
    expected = caffe_cifar_quick_forward(blobs, images)
    np.testing.assert_allclose(model(images).numpy(), expected, rtol=1e-3,
                               atol=1e-3 * np.abs(expected).max())

    bad = subprocess.run([sys.executable, "-m", "noise_model.import_caffemodel",
                          "--caffemodel=%s" % path, "--model=cifar_quick", "--num_outputs=5",
                          "--output=%s" % (tmp_path / "bad.weights.h5")],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "layer ip2" in last and "--exclude_layers" in last
    assert not (tmp_path / "bad.weights.h5").exists()


FLAG_ERRORS = [
    ("no_caffemodel", ["--caffemodel"], ["--caffemodel=None", "must have a value other than None"]),
    ("missing_caffemodel", ["--caffemodel={missing}"], ["{missing}", "--caffemodel", "file not found"]),
    ("no_model", ["--model"], ["--model=None", "must have a value other than None"]),
    ("model_unknown", ["--model=alexnet"], ["--model=alexnet", "value should be one of"]),
    ("no_output", ["--output"], ["--output=None", "must have a value other than None"]),
    ("output_suffix", ["--output={tmp}/quick.h5"], ["--output={tmp}/quick.h5", "must be a path ending in .weights.h5"]),
    ("num_outputs_0", ["--num_outputs=0"], ["--num_outputs=0", "not a positive integer"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in FLAG_ERRORS], ids=[case[0] for case in FLAG_ERRORS])
def test_cli_flag_errors(quick_model_file, tmp_path, args, expected):
    """A bad flag or a missing caffemodel is one stderr line naming the flag and value, exit
    status 2, before TensorFlow loads (nothing else on stderr). A bare flag in `args` leaves
    that flag out."""
    names = {"missing": str(tmp_path / "none.caffemodel"), "tmp": str(tmp_path)}
    base = {"--caffemodel": "--caffemodel=%s" % quick_model_file[0], "--model": "--model=cifar_quick",
            "--output": "--output=%s" % (tmp_path / "quick.weights.h5")}
    for arg in args:
        base.pop(arg.split("=")[0], None)
    given = list(base.values()) + [arg.format(**names) for arg in args if "=" in arg]
    quiet_env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, SCRIPT] + given, capture_output=True, text=True, env=quiet_env,
                            timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(part.format(**names) in lines[0] for part in expected), lines[0]
    assert os.listdir(tmp_path) == []
