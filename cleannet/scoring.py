"""Scoring samples with a trained CleanNet, using a class-embedding cache.

In inference mode the reference-set encoder's output φ_s depends only on the class, so
`ClassEmbeddingScorer` encodes each class's reference set once (C × num_ref rows instead
of num_ref rows per sample) and scores a sample with the query encoder plus a gather.
`score_per_sample` is the original per-sample path, kept for checks and benchmarks.

Beyond the paper, `ClassEmbeddingScorer.score_against_all` compares each sample with every
class (the [n, C] cosines are computed one batch at a time, so memory stays bounded by
batch_size × C whatever n is) and keeps, per sample, its own-class similarity and the
closest other class.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from cleannet.metrics import similarity


@dataclasses.dataclass
class CrossClassScores:
    """A sample scored against every class.

    similarity: float32 [n], cosine to the labelled class (as `ClassEmbeddingScorer.score`).
    best_other_class: int32 [n], the closest class other than the label (-1: none exists).
    best_other_similarity: float32 [n], its cosine (-inf: none exists).
    """
    similarity: np.ndarray
    best_other_class: np.ndarray
    best_other_similarity: np.ndarray

    @property
    def margin(self):
        """float64 [n]: own-class similarity minus the best other class's (+inf: no other class)."""
        return self.similarity.astype(np.float64) - self.best_other_similarity.astype(np.float64)

    def __len__(self):
        return len(self.similarity)

    def take(self, index):
        """The scores of the samples selected by `index` (a slice, mask or index array)."""
        return CrossClassScores(self.similarity[index], self.best_other_class[index],
                                self.best_other_similarity[index])


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
        self._score_all = tf.function(self._score_all_batch, reduce_retracing=True)
        self._against_all = tf.function(self._against_all_batch, reduce_retracing=True)

    def _score_batch(self, features, class_ids):
        _, phi_q, _ = self.model.encode_queries(features)
        phi_s = tf.gather(self.class_embeddings, class_ids)
        return similarity(phi_s, phi_q)

    def _score_all_batch(self, features):
        _, phi_q, _ = self.model.encode_queries(features)
        phi_q = tf.math.l2_normalize(tf.cast(phi_q, tf.float32), axis=1)
        phi_s = tf.math.l2_normalize(tf.cast(self.class_embeddings, tf.float32), axis=1)
        return tf.matmul(phi_q, phi_s, transpose_b=True)  # [b, C]

    def _against_all_batch(self, features, class_ids):
        own = self._score_batch(features, class_ids)
        all_classes = self._score_all_batch(features)
        is_own = tf.one_hot(class_ids, self.num_classes, on_value=True, off_value=False)
        others = tf.where(is_own, tf.constant(-np.inf, tf.float32), all_classes)
        return own, tf.argmax(others, axis=1, output_type=tf.int32), tf.reduce_max(others, axis=1)

    def score_all_classes(self, features, batch_size=4096):
        """Cosine similarities float32 [n, C] of features [n, h] to every class.

        The whole [n, C] matrix is returned: for large n use `score_against_all`.
        """
        features = np.asarray(features, dtype=np.float32)
        out = [self._score_all(features[i:i + batch_size]).numpy() for i in range(0, len(features), batch_size)]
        return np.concatenate(out) if out else np.zeros([0, self.num_classes], np.float32)

    def score_against_all(self, features, class_ids, batch_size=4096):
        """Own-class similarity and the closest other class, for features [n, h], class ids [n].

        Only a [batch_size, C] block of cosines exists at a time. With a single class there
        is no other class: best_other_class is -1 and best_other_similarity -inf.

        Returns:
          CrossClassScores; its `similarity` equals `score(features, class_ids, batch_size)`.
        """
        features = np.asarray(features, dtype=np.float32)
        class_ids = np.asarray(class_ids, dtype=np.int32)
        parts = [[t.numpy() for t in self._against_all(features[i:i + batch_size], class_ids[i:i + batch_size])]
                 for i in range(0, len(features), batch_size)]
        if not parts:
            return CrossClassScores(np.zeros([0], np.float32), np.zeros([0], np.int32), np.zeros([0], np.float32))
        own, best, best_sim = (np.concatenate(column) for column in zip(*parts))
        best[~np.isfinite(best_sim)] = -1
        return CrossClassScores(own, best, best_sim)

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
