"""Scoring samples with a trained CleanNet, using a class-embedding cache.

In inference mode the reference-set encoder's output φ_s depends only on the class, so
`ClassEmbeddingScorer` encodes each class's reference set once (C × num_ref rows instead
of num_ref rows per sample) and scores a sample with the query encoder plus a gather.
`score_per_sample` is the original per-sample path, kept for checks and benchmarks.
"""

import numpy as np
import tensorflow as tf

from cleannet.metrics import similarity


class ClassEmbeddingScorer:
    """Cosine similarities of samples to their class, with φ_s cached per class.

    Args:
      model: a built CleanNet.
      reference_table: float32 [C, R, h], ref.npy.
      class_chunk: classes encoded per call while filling the cache (bounds memory).
    """

    def __init__(self, model, reference_table, class_chunk=256):
        self.model = model
        tables = [model.encode_classes(tf.constant(reference_table[i:i + class_chunk], tf.float32))
                  for i in range(0, len(reference_table), class_chunk)]
        self.class_embeddings = tf.concat(tables, axis=0)  # [C, 128]
        self.num_classes = int(self.class_embeddings.shape[0])
        self._score = tf.function(self._score_batch, reduce_retracing=True)

    def _score_batch(self, features, class_ids):
        _, phi_q, _ = self.model.encode_queries(features)
        phi_s = tf.gather(self.class_embeddings, class_ids)
        return similarity(phi_s, phi_q)

    def score(self, features, class_ids, batch_size=4096):
        """Cosine similarities float32 [n] for features [n, h] and class ids [n]."""
        features = np.asarray(features, dtype=np.float32)
        class_ids = np.asarray(class_ids, dtype=np.int32)
        out = [self._score(features[i:i + batch_size], class_ids[i:i + batch_size]).numpy()
               for i in range(0, len(features), batch_size)]
        return np.concatenate(out) if out else np.zeros([0], np.float32)


def score_per_sample(model, features, class_ids, reference_table):
    """The original path: each sample's reference set gathered and encoded. Returns [n]."""
    reference = tf.gather(tf.constant(reference_table, tf.float32), class_ids)
    phi_s, _, phi_q, _ = model((tf.constant(features, tf.float32), reference), training=False)
    return similarity(phi_s, phi_q).numpy()
