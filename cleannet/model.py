"""The CleanNet joint embedding network (Lee et al., CVPR 2018), docs/originals.md#cleannet-model.

CleanNet scores how likely a sample's class label is correct: a query encoder embeds the
sample's feature vector, a reference-set encoder embeds the class from a set of reference
feature vectors (k-means centres of the class), and the score is the cosine similarity of
the two 128-d embeddings.

Layer correspondence with the original TF1 graph (used by util/import_tf1_checkpoint.py):

    query_encoder/fully_connected      QueryEncoder.hidden          [h, 256]
    query_encoder/fully_connected_1    QueryEncoder.embedding       [256, 128]
    query_encoder/fully_connected_2    QueryEncoder.decoder_hidden  [128, 256]
    query_encoder/fully_connected_3    QueryEncoder.reconstruction  [256, h]
    ref_set_encoder/fully_connected    RefSetEncoder.hidden0        [h, 512]
    ref_set_encoder/fully_connected_1  RefSetEncoder.hidden         [512, 256]
    ref_set_encoder/fully_connected_2  RefSetEncoder.attention_key  [256, 256]
    ref_set_encoder/fully_connected_3  RefSetEncoder.embedding      [256, 128]
    ref_set_encoder/context            RefSetEncoder.context        [256]
"""

from typing import Any

import keras
import tensorflow as tf

from cleannet.choices import EMBED_NORMS
EMBED_SIZE = 128


def normalize_features(features: tf.Tensor, embed_norm: str) -> tf.Tensor:
    """Feature normalisation `embed_norm` along the last axis.

    Args:
      features: float tensor [..., h] (cast to float32).
      embed_norm: "log" (log(x + 1)), "l2norm" or "l2_norm" (unit L2 norm, epsilon 1e-12
        as tf.nn.l2_normalize), or "no_norm" (unchanged).

    Returns:
      float32 tensor of the same shape.
    """
    features = tf.cast(features, tf.float32)
    if embed_norm == "log":
        return tf.math.log(features + 1.0)
    if embed_norm in ("l2norm", "l2_norm"):
        return tf.math.l2_normalize(features, axis=-1)
    if embed_norm == "no_norm":
        return features
    raise ValueError("embed_norm must be one of %s, got %r" % ("|".join(EMBED_NORMS), embed_norm))


def _tanh_dense(units, name):
    return keras.layers.Dense(units, activation="tanh", kernel_initializer="glorot_uniform",
                              bias_initializer="zeros", name=name)


class QueryEncoder(keras.Model):
    """Encodes a normalised query feature v_q [B, h] into φ_q [B, 128] and decodes it back.

    dense 256 tanh → dense 128 tanh = φ_q; dense 256 tanh → dense h tanh = v_qr.
    """

    def __init__(self, img_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.img_dim = img_dim
        self.hidden = _tanh_dense(256, "hidden")
        self.embedding = _tanh_dense(EMBED_SIZE, "embedding")
        self.decoder_hidden = _tanh_dense(256, "decoder_hidden")
        self.reconstruction = _tanh_dense(img_dim, "reconstruction")

    def call(self, v_q: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns (phi_q [B, 128], v_qr [B, h])."""
        phi_q = self.embedding(self.hidden(v_q))
        v_qr = self.reconstruction(self.decoder_hidden(phi_q))
        return phi_q, v_qr


class RefSetEncoder(keras.Model):
    """Encodes a normalised reference set v_S [B, R, h] into the class embedding φ_s [B, 128].

    h0 = tanh(dense 512) → dropout (training only) → h = tanh(dense 256) →
    u = tanh(dense 256); attention logits u·c with a learned 256-vector c; α = softmax over
    the R references; s = Σ_r α_r h_r; φ_s = tanh(dense 128 of s).
    """

    def __init__(self, dropout_rate: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden0 = _tanh_dense(512, "hidden0")
        self.dropout = keras.layers.Dropout(dropout_rate)
        self.hidden = _tanh_dense(256, "hidden")
        self.attention_key = _tanh_dense(256, "attention_key")
        self.embedding = _tanh_dense(EMBED_SIZE, "embedding")
        self.context = self.add_weight(shape=(256,), initializer="glorot_uniform", name="context")

    def call(self, v_s: tf.Tensor, training: bool = False,
             return_attention: bool = False) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """Returns φ_s [B, 128], and with return_attention also α [B, R]."""
        return self.attend(self.hidden0(v_s), training=training, return_attention=return_attention)

    def attend(self, h0: tf.Tensor, training: bool = False,
               return_attention: bool = False) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """The layers after hidden0: h0 [B, R, 512] (hidden0's output, before dropout) → φ_s.

        Dropout (training only) applies here, so a caller may compute hidden0 once per
        class and gather its rows per sample before calling this: every sample still gets
        its own dropout mask. Returns φ_s [B, 128], and with return_attention also α [B, R].
        """
        h0 = self.dropout(h0, training=training)
        h = self.hidden(h0)
        u = self.attention_key(h)
        logits = tf.reduce_sum(u * tf.cast(self.context, u.dtype), axis=2, keepdims=True)
        alpha = tf.nn.softmax(logits, axis=1)  # [B, R, 1]
        attended = tf.reduce_sum(h * alpha, axis=1)  # [B, 256]
        phi_s = self.embedding(attended)
        if return_attention:
            return phi_s, tf.squeeze(alpha, axis=2)
        return phi_s


class CleanNet(keras.Model):
    """CleanNet: `model((query, reference), training)` → (phi_s, v_q, phi_q, v_qr).

    Args:
      num_ref: references per class, R.
      img_dim: feature dimension, h.
      embed_norm: "log" | "l2norm" (or "l2_norm") | "no_norm".
      dropout_rate: dropout on the reference encoder's first layer, training only.
      weight_decay: L2 factor; `regularization_loss()` = weight_decay · Σ_kernels Σw²/2.
      share_reference_encoder: whether `call_by_class` encodes each distinct class of a
        batch once (True) or every sample's reference set (False: the original per-sample
        computation, kept for checks and benchmarks). Not a weight: checkpoints are the same.

    Inputs: query float32 [B, h] (raw features), reference float32 [B, R, h] (raw features
    of each sample's class reference set). Outputs: phi_s [B, 128] class embedding,
    v_q [B, h] normalised query, phi_q [B, 128] query embedding, v_qr [B, h] reconstruction.
    """

    def __init__(self, num_ref: int, img_dim: int, embed_norm: str = "log", dropout_rate: float = 0.0,
                 weight_decay: float = 0.0, share_reference_encoder: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if embed_norm not in EMBED_NORMS:
            raise ValueError("embed_norm must be one of %s, got %r" % ("|".join(EMBED_NORMS), embed_norm))
        self.num_ref = num_ref
        self.img_dim = img_dim
        self.embed_norm = embed_norm
        self.dropout_rate = dropout_rate
        self.weight_decay = weight_decay
        self.share_reference_encoder = share_reference_encoder
        self.query_encoder = QueryEncoder(img_dim, name="query_encoder")
        self.ref_set_encoder = RefSetEncoder(dropout_rate, name="ref_set_encoder")

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor],
             training: bool = False) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        query, reference = inputs
        v_q = normalize_features(query, self.embed_norm)
        v_s = normalize_features(reference, self.embed_norm)
        phi_q, v_qr = self.query_encoder(v_q)
        phi_s = self.ref_set_encoder(v_s, training=training)
        return phi_s, v_q, phi_q, v_qr

    def call_by_class(self, query: tf.Tensor, reference_table: tf.Tensor, class_ids: tf.Tensor,
                      training: bool = False, normalized_table: tf.Tensor | None = None
                      ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """The model's outputs when sample i's reference set is reference_table[class_ids[i]].

        Equal, up to float rounding, to `self((query, tf.gather(reference_table, class_ids)),
        training)`, in values and gradients, with and without dropout. With
        share_reference_encoder, what depends only on the class is computed once per
        distinct class of the batch (U classes) and gathered per sample: the normalisation
        and hidden0 (dense 512 + tanh, the dominant cost) always; the whole reference-set
        encoder when no dropout applies (inference, or dropout_rate 0). Dropout, when it
        applies, stays per sample: it is drawn after the gather.

        Args:
          query: float [B, h], raw query features.
          reference_table: float [C, R, h], raw reference features of every class (ref.npy).
          class_ids: int [B], each sample's class, in [0, C).
          training: whether dropout applies.
          normalized_table: optional, `normalize_features(reference_table, embed_norm)` computed
            once by a caller that uses the same table at every step; the shared computation
            then gathers from it instead of normalising the batch's classes again.

        Returns:
          (phi_s [B, 128], v_q [B, h], phi_q [B, 128], v_qr [B, h]), as `call`.
        """
        if not self.share_reference_encoder:
            return self((query, tf.gather(reference_table, class_ids)), training=training)
        # Cast as Keras casts the inputs of `self(...)` (float16 under mixed precision).
        query = tf.cast(query, self.compute_dtype)
        classes, sample_class = tf.unique(class_ids)  # classes [U]; sample i is classes[sample_class[i]]
        v_q = normalize_features(query, self.embed_norm)
        phi_q, v_qr = self.query_encoder(v_q)
        if normalized_table is None:
            class_reference = tf.cast(tf.gather(reference_table, classes), self.compute_dtype)  # [U, R, h]
            v_s = normalize_features(class_reference, self.embed_norm)
        else:
            v_s = tf.cast(tf.gather(normalized_table, classes), tf.float32)  # as normalize_features returns
        encoder = self.ref_set_encoder
        if training and self.dropout_rate > 0:
            h0 = tf.gather(encoder.hidden0(v_s), sample_class)  # [B, R, 512]
            phi_s = encoder.attend(h0, training=True)
        else:
            phi_s = tf.gather(encoder(v_s, training=False), sample_class)  # [U, 128] → [B, 128]
        return phi_s, v_q, phi_q, v_qr

    def encode_queries(self, query: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Query path only: raw query [B, h] → (v_q, phi_q, v_qr)."""
        v_q = normalize_features(query, self.embed_norm)
        phi_q, v_qr = self.query_encoder(v_q)
        return v_q, phi_q, v_qr

    def encode_classes(self, reference_table: tf.Tensor) -> tf.Tensor:
        """Inference-mode class embeddings: raw references [C, R, h] → phi_s [C, 128].

        In inference the reference-set encoder depends only on the class, so each class's
        set is encoded once and samples look their class up (see cleannet.scoring).
        """
        return self.ref_set_encoder(normalize_features(reference_table, self.embed_norm), training=False)

    def kernels(self) -> list[keras.Variable]:
        """The dense kernels (the weights the L2 regulariser covers; not biases, not c)."""
        return [layer.kernel for encoder in (self.query_encoder, self.ref_set_encoder)
                for layer in encoder.layers if isinstance(layer, keras.layers.Dense)]

    def regularization_loss(self) -> tf.Tensor:
        """weight_decay · Σ_kernels Σw²/2, TF1's l2_regularizer(weight_decay) summed."""
        if not self.weight_decay:
            return tf.constant(0.0, tf.float32)
        return self.weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(k, tf.float32)) for k in self.kernels()])

    def build_variables(self) -> "CleanNet":
        """Creates every variable by calling the model once on zeros; returns self."""
        self((tf.zeros([1, self.img_dim]), tf.zeros([1, self.num_ref, self.img_dim])), training=False)
        return self
