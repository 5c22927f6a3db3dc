"""CleanNet's inference path in NumPy: scoring a trained model without loading TensorFlow.

Inference needs only the encoders' forward pass in inference mode (no dropout), a few
small dense layers on float32 arrays. Loading TensorFlow for them costs seconds of
start-up, more than parsing a few thousand input rows, so inference.py runs this NumPy
copy of `cleannet.model.CleanNet`'s forward pass instead. The formulas are those of
cleannet/model.py (docs/originals.md#cleannet-model); tests/test_numpy_model.py checks
the two against each other.

Weights come either from a checkpoint (`cleannet.checkpoints.load_inference_model`: the
`.npz` inference file train.py writes beside each checkpoint, read with NumPy) or from a
Keras CleanNet in memory (`from_keras`, used by train.py to calibrate and store each saved
model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from cleannet.choices import EMBED_NORMS
from cleannet.model_config import ModelConfig

if TYPE_CHECKING:
    from cleannet.model import CleanNet

# Dense layers of the inference path, (encoder, layer) as attribute names of
# cleannet.model.CleanNet in forward order, each with the layer of its encoder that feeds
# it (None: the normalised features). The decoder (query_encoder.decoder_hidden,
# .reconstruction) only serves the training loss.
LAYER_INPUTS = {
    ("query_encoder", "hidden"): None,
    ("query_encoder", "embedding"): "hidden",
    ("ref_set_encoder", "hidden0"): None,
    ("ref_set_encoder", "hidden"): "hidden0",
    ("ref_set_encoder", "attention_key"): "hidden",
    ("ref_set_encoder", "embedding"): "hidden",  # applied to the attention-weighted sum of `hidden`
}
DENSE_LAYERS = tuple(LAYER_INPUTS)
QUERY_LAYERS = tuple(layer for encoder, layer in DENSE_LAYERS if encoder == "query_encoder")
CONTEXT = ("ref_set_encoder", "context")
L2_EPSILON = 1e-12  # as tf.math.l2_normalize: x / sqrt(max(Σx², ε))


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x / sqrt(max(Σx², 1e-12)) along `axis`, in float32 (tf.math.l2_normalize)."""
    x = np.asarray(x, np.float32)
    squares = np.sum(x * x, axis=axis, keepdims=True)
    return x / np.sqrt(np.maximum(squares, np.float32(L2_EPSILON)))


def cosine_similarity(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Per-row cosine of [n, d] and [n, d] → float32 [n] (as cleannet.metrics.similarity)."""
    return np.sum(l2_normalize(x1, axis=1) * l2_normalize(x2, axis=1), axis=1)


def normalize_features(features: np.ndarray, embed_norm: str) -> np.ndarray:
    """cleannet.model.normalize_features in NumPy: float32 [..., h] → float32 [..., h]."""
    features = np.asarray(features, np.float32)
    if embed_norm == "log":
        return np.log(features + np.float32(1.0))
    if embed_norm in ("l2norm", "l2_norm"):
        return l2_normalize(features)
    if embed_norm == "no_norm":
        return features
    raise ValueError("embed_norm must be one of %s, got %r" % ("|".join(EMBED_NORMS), embed_norm))


class NumpyCleanNet:
    """A trained CleanNet's inference path on float32 NumPy arrays.

    Args:
      weights: {(encoder, layer): (kernel [in, out], bias [out])} for every entry of
        DENSE_LAYERS, and {CONTEXT: context [256]}; float32 arrays.
      img_dim: feature dimension h; num_ref: references per class R.
      embed_norm: "log" | "l2norm" (or "l2_norm") | "no_norm".

    Raises:
      ValueError: a missing layer, a shape that does not fit img_dim, or a non-finite weight.
    """

    def __init__(self, weights: Mapping, img_dim: int, num_ref: int, embed_norm: str) -> None:
        if embed_norm not in EMBED_NORMS:
            raise ValueError("embed_norm must be one of %s, got %r" % ("|".join(EMBED_NORMS), embed_norm))
        self.img_dim = img_dim
        self.num_ref = num_ref
        self.embed_norm = embed_norm
        self.dense = {}
        for key in DENSE_LAYERS:
            if key not in weights:
                raise ValueError("no weights for %s/%s" % key)
            kernel, bias = (np.asarray(w, np.float32) for w in weights[key])
            self.dense[key] = (kernel, bias)
        if CONTEXT not in weights:
            raise ValueError("no weights for %s/%s" % CONTEXT)
        self.context = np.asarray(weights[CONTEXT], np.float32)
        self._check_shapes()

    def _check_shapes(self) -> None:
        """Each kernel 2-D with its bias, each layer fed by the one before it, the first
        layers by h features, the context as long as the attention keys; all finite."""
        for key, (kernel, bias) in self.dense.items():
            if kernel.ndim != 2 or bias.shape != kernel.shape[1:]:
                raise ValueError("%s/%s: kernel %s and bias %s do not make a dense layer"
                                 % (key + (kernel.shape, bias.shape)))
        for key, source in LAYER_INPUTS.items():
            kernel = self.dense[key][0]
            width = self.img_dim if source is None else self.dense[(key[0], source)][0].shape[1]
            if kernel.shape[0] != width:
                raise ValueError("%s/%s: kernel %s does not take %d inputs" % (key + (kernel.shape, width)))
        keys_bias = self.dense[("ref_set_encoder", "attention_key")][1]
        if self.context.shape != keys_bias.shape:
            raise ValueError("context has shape %s, expected that of the attention keys %s"
                             % (self.context.shape, keys_bias.shape))
        arrays = [a for pair in self.dense.values() for a in pair] + [self.context]
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("the weights hold NaN or infinite values")

    @property
    def config(self) -> ModelConfig:
        """The model configuration (img_dim, num_ref, embed_norm)."""
        return ModelConfig(self.img_dim, self.num_ref, self.embed_norm)

    @classmethod
    def from_keras(cls, model: CleanNet) -> NumpyCleanNet:
        """The inference path of a built Keras CleanNet, with its current weights (copied)."""
        weights = {}
        for encoder, layer in DENSE_LAYERS:
            dense = getattr(getattr(model, encoder), layer)
            weights[(encoder, layer)] = (np.array(dense.kernel.numpy()), np.array(dense.bias.numpy()))
        weights[CONTEXT] = np.array(model.ref_set_encoder.context.numpy())
        return cls(weights, model.img_dim, model.num_ref, model.embed_norm)

    def _apply(self, key: tuple[str, str], x: np.ndarray) -> np.ndarray:
        kernel, bias = self.dense[key]
        return np.tanh(x @ kernel + bias)

    def encode_queries(self, features: np.ndarray) -> np.ndarray:
        """Raw query features float [n, h] → query embeddings φ_q float32 [n, 128]."""
        x = normalize_features(features, self.embed_norm)
        for name in QUERY_LAYERS:
            x = self._apply(("query_encoder", name), x)
        return x

    def encode_classes(self, reference_table: np.ndarray) -> np.ndarray:
        """Raw reference sets float [C, R, h] → class embeddings φ_s float32 [C, 128].

        h0 = tanh(dense 512), h = tanh(dense 256), u = tanh(dense 256), α = softmax over
        the R references of u·c, s = Σ_r α_r h_r, φ_s = tanh(dense 128 of s).
        """
        v_s = normalize_features(reference_table, self.embed_norm)
        h = self._apply(("ref_set_encoder", "hidden"), self._apply(("ref_set_encoder", "hidden0"), v_s))
        logits = self._apply(("ref_set_encoder", "attention_key"), h) @ self.context  # [C, R]
        alpha = np.exp(logits - logits.max(axis=1, keepdims=True))
        alpha /= alpha.sum(axis=1, keepdims=True)
        attended = np.einsum("cr,crd->cd", alpha, h)  # [C, 256]
        return self._apply(("ref_set_encoder", "embedding"), attended)
