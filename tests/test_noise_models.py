"""The networks of docs/originals.md#noisy-label-model-cifar-10-protocol and #noisy-label-model-clothing1m-protocol: shapes, Caffe pooling and LRN, grouped convs, init."""

import keras
import numpy as np
import pytest

from noise_model.model import models
from noisylabels.errors import InputError


def caffe_pool_reference(x, kernel, stride, mode):
    """Caffe's PoolingLayer forward (pad 0) for NHWC input, loop by loop."""
    batch, height, width, channels = x.shape
    out_h = int(np.ceil((height - kernel) / stride)) + 1
    out_w = int(np.ceil((width - kernel) / stride)) + 1
    out = np.zeros((batch, out_h, out_w, channels))
    for ph in range(out_h):
        for pw in range(out_w):
            hstart, wstart = ph * stride, pw * stride
            hend, wend = min(hstart + kernel, height), min(wstart + kernel, width)
            pool_size = (hend - hstart) * (wend - wstart)
            window = x[:, hstart:hend, wstart:wend, :]
            if mode == "max":
                out[:, ph, pw, :] = window.max(axis=(1, 2))
            else:
                out[:, ph, pw, :] = window.sum(axis=(1, 2)) / pool_size
    return out


def caffe_lrn_reference(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """b = a / (k + α/n Σ_{c' in window} a_{c'}²)^β, the window centred and clipped."""
    channels = x.shape[-1]
    half = (local_size - 1) // 2
    out = np.zeros_like(x)
    for c in range(channels):
        lo, hi = max(0, c - half), min(channels, c + half + 1)
        scale = k + alpha / local_size * np.sum(x[..., lo:hi] ** 2, axis=-1)
        out[..., c] = x[..., c] / scale ** beta
    return out


def grouped_conv_reference(x, kernel, bias, groups):
    """'same' stride-1 convolution with Caffe groups, kernel [kh, kw, in/groups, out]."""
    batch, height, width, _ = x.shape
    kh, kw, in_per_group, out_channels = kernel.shape
    out_per_group = out_channels // groups
    padded = np.pad(x, [(0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])
    out = np.zeros((batch, height, width, out_channels))
    for o in range(out_channels):
        g = o // out_per_group
        inputs = padded[..., g * in_per_group:(g + 1) * in_per_group]
        for i in range(height):
            for j in range(width):
                patch = inputs[:, i:i + kh, j:j + kw, :]
                out[:, i, j, o] = np.sum(patch * kernel[None, :, :, :, o], axis=(1, 2, 3))
    return out + bias


@pytest.mark.parametrize("mode", ["max", "ave"])
@pytest.mark.parametrize("height,width", [(8, 11), (9, 9), (32, 32)])
def test_caffe_pooling_matches_numpy(mode, height, width):
    x = np.random.default_rng(0).normal(size=(2, height, width, 3)).astype(np.float32)
    got = models.CaffePooling2D(3, 2, mode)(x).numpy()
    want = caffe_pool_reference(x.astype(np.float64), 3, 2, mode)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lrn_matches_caffe_formula():
    x = np.random.default_rng(1).normal(scale=30.0, size=(2, 3, 3, 9)).astype(np.float32)
    got = models.CaffeLRN()(x).numpy()
    np.testing.assert_allclose(got, caffe_lrn_reference(x.astype(np.float64)), rtol=1e-5)


def test_grouped_conv_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)
    layer = models.GroupedConv2D(6, 3, padding="same", groups=2)
    layer.build(x.shape)
    kernel = rng.normal(size=(3, 3, 2, 6)).astype(np.float32)
    bias = rng.normal(size=6).astype(np.float32)
    layer.set_weights([kernel, bias])
    got = layer(x).numpy()
    np.testing.assert_allclose(got, grouped_conv_reference(x, kernel, bias, 2), rtol=1e-4,
                               atol=1e-5)


def test_cifar_quick_shapes_names_flatten_order_and_init():
    keras.utils.set_random_seed(0)
    model = models.build_clean_model("cifar10", 10)
    names = [layer.name for layer in model.layers]
    for name in ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "ip1", "ip2"]:
        assert name in names
    assert models.conv_layer_names(model) == ["conv1", "conv2", "conv3"]
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
    features = model.features(x).numpy()
    assert features.shape == (2, 4, 4, 64)
    # ip1 reads the map flattened in H×W×C order, and ip1 → ip2 has no ReLU.
    w1, b1 = model.ip1.get_weights()
    w2, b2 = model.ip2.get_weights()
    want = (features.reshape(2, -1) @ w1 + b1) @ w2 + b2
    np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-4, atol=1e-6)

    stds = {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "ip1": 0.1, "ip2": 0.1}
    for name, std in stds.items():
        kernel, bias = model.get_layer(name).get_weights()
        assert abs(kernel.std() / std - 1) < 0.1, name
        assert abs(kernel.mean()) < 4 * std / np.sqrt(kernel.size), name
        assert np.all(bias == 0), name
    assert models.build_ntype_model("digits")(x).shape == (2, 3)


@pytest.fixture(scope="module")
def caffenets():
    keras.utils.set_random_seed(1)
    return models.build_clean_model("clothing1m", 14), models.build_ntype_model("clothing1m")


def test_caffenet_shapes_and_names(caffenets):
    clean, ntype = caffenets
    x = np.random.default_rng(4).normal(size=(2, 227, 227, 3)).astype(np.float32)
    assert clean.features(x).shape == (2, 6, 6, 256)
    assert clean(x).shape == (2, 14)
    assert ntype(x).shape == (2, 3)
    assert models.conv_layer_names(clean) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert [layer.name for layer in clean.layers if layer.weights][-3:] == ["fc6", "fc7", "fc8"]
    assert [layer.name for layer in ntype.layers if layer.weights][-3:] == [
        "fc6", "fc7_ntype", "fc8_ntype"]
    # Grouped layers keep one kernel [kh, kw, in/2, out].
    assert tuple(clean.get_layer("conv2").kernel.shape) == (5, 5, 48, 256)
    assert tuple(clean.get_layer("conv4").kernel.shape) == (3, 3, 192, 384)
    assert tuple(clean.get_layer("conv5").kernel.shape) == (3, 3, 192, 256)
    # Dropout only in training mode: inference is deterministic.
    np.testing.assert_array_equal(clean(x[:1]).numpy(), clean(x[:1]).numpy())


def test_caffenet_init(caffenets):
    clean, ntype = caffenets
    want = {"conv1": (0.01, 0.0), "conv2": (0.01, 1.0), "conv3": (0.01, 0.0),
            "conv4": (0.01, 1.0), "conv5": (0.01, 1.0), "fc6": (0.005, 1.0),
            "fc7": (0.005, 1.0), "fc8": (0.01, 0.0)}
    for name, (std, bias_value) in want.items():
        kernel, bias = clean.get_layer(name).get_weights()
        assert abs(kernel.std() / std - 1) < 0.05, name
        assert np.all(bias == bias_value), name
    kernel, bias = ntype.get_layer("fc7_ntype").get_weights()
    assert kernel.shape == (4096, 1024) and abs(kernel.std() / 0.005 - 1) < 0.05
    assert np.all(bias == 1.0)


def test_copy_matching_weights_copies_only_name_and_shape_matches(caffenets):
    keras.utils.set_random_seed(2)
    source = models.build_clean_model("cifar10", 10)
    target = models.build_ntype_model("cifar10")  # ip2 has 3 outputs: shape differs
    ip2_before = [w.copy() for w in target.ip2.get_weights()]
    copied = models.copy_matching_weights(source, target)
    assert copied == ["conv1", "conv2", "conv3", "ip1"]
    for name in copied:
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(ip2_before, target.ip2.get_weights()):
        np.testing.assert_array_equal(a, b)

    fresh = models.build_ntype_model("cifar10")
    ip1_before = fresh.ip1.get_weights()[0].copy()
    assert models.copy_matching_weights(source, fresh, models.conv_layer_names(source)) == [
        "conv1", "conv2", "conv3"]
    np.testing.assert_array_equal(fresh.ip1.get_weights()[0], ip1_before)

    clean, ntype = caffenets
    # CaffeNet → noise-type net: convs and fc6 match; fc7/fc8 have other names.
    assert models.copy_matching_weights(clean, ntype, ["conv1", "fc6", "fc7", "fc8"]) == [
        "conv1", "fc6"]

    with pytest.raises(ValueError, match="not built"):
        models.copy_matching_weights(source, models.CifarQuick(3))


def test_joint_model_and_dataset_names():
    clean, ntype = models.build_clean_model("digits", 10), models.build_ntype_model("digits")
    joint = models.JointModel(clean, ntype)
    x = np.zeros((3, 32, 32, 3), np.float32)
    clean_logits, ntype_logits = joint(x)
    assert clean_logits.shape == (3, 10) and ntype_logits.shape == (3, 3)
    assert joint.clean_net is clean and joint.ntype_net is ntype
    assert len(joint.trainable_variables) == 20
    with pytest.raises(InputError, match="dataset"):
        models.build_clean_model("mnist", 10)
    with pytest.raises(InputError, match="dataset"):
        models.build_ntype_model("imagenet")
