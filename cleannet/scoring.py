"""Scoring samples with a trained CleanNet, using a class-embedding cache.

In inference mode the reference-set encoder's output φ_s depends only on the class, so
`ClassEmbeddingScorer` encodes each class's reference set once (C × num_ref rows instead
of num_ref rows per sample) and scores a sample with the query encoder plus a gather.
`score_per_sample` is the original per-sample path, kept for checks and benchmarks.

Beyond the paper, `ClassEmbeddingScorer.score_against_all` compares each sample with every
class and keeps, per sample, its labelled class's score and the best other class. Two
class scores (CLASS_SCORES), both cosines in CleanNet's 128-d embedding space:
- "references": the soft nearest reference of class c. The references r of c are embedded
  with the query encoder, like samples, and the score is the soft maximum
  τ·log(mean_r exp(cos(φ_q(x), φ_q(r)) / τ)) with τ = REFERENCE_TEMPERATURE (between the
  mean and the maximum of the R cosines).
- "embedding": cos(φ_q(x), φ_s(c)), CleanNet's own similarity of x to class c.
- "neighbours": the share of x's NEIGHBOURS nearest samples (cosine in the query
  encoder's space) that are labelled c, among a bank of labelled samples (all.npy).
  A bank row whose embedding equals x's (cosine ≥ SELF_COSINE: x itself) is skipped, so
  a sample of the bank is judged by the others' labels only (leave-one-out). Needs the
  bank; the scores of a batch are [batch_size, bank rows] at a time.
The scores exist one batch at a time ([batch_size, C], or [batch_size, C, R] for
"references"), so memory does not grow with the number of samples.

Everything here runs in NumPy on a cleannet.numpy_model.NumpyCleanNet, so that inference
needs no TensorFlow; only `score_per_sample` uses TensorFlow and a Keras CleanNet.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from cleannet.choices import CLASS_SCORES
from cleannet.numpy_model import NumpyCleanNet, cosine_similarity, l2_normalize

if TYPE_CHECKING:
    from cleannet.model import CleanNet

REFERENCE_TEMPERATURE = 0.1
NEIGHBOURS = 20  # k of the "neighbours" class score
MIN_BANK_SAMPLES = 2  # samples a class needs in the bank (one is the sample itself)
SELF_COSINE = 1.0 - 1e-5  # a bank row this close to the sample is the sample itself (skipped)
_ENCODE_ROWS = 4096  # reference vectors sent through the query encoder per call


@dataclasses.dataclass
class CrossClassScores:
    """Samples scored against every class.

    similarity: float32 [n], CleanNet's cosine to the labelled class (as `ClassEmbeddingScorer.score`).
    own_score: float32 [n], the labelled class's class score (see CLASS_SCORES).
    best_other_class: int32 [n], the class other than the label with the highest score (-1: none).
    best_other_score: float32 [n], its score (-inf where there is no other class).
    """
    similarity: np.ndarray
    own_score: np.ndarray
    best_other_class: np.ndarray
    best_other_score: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        """float64 [n]: own_score minus best_other_score (+inf where there is no other class)."""
        return self.own_score.astype(np.float64) - self.best_other_score.astype(np.float64)

    def __len__(self) -> int:
        return len(self.similarity)


def check_bank(class_ids: np.ndarray, num_classes: int, path: str = "all.npy") -> None:
    """Raises InputError unless every class present in the bank (class ids [N]) has at least
    MIN_BANK_SAMPLES samples: with fewer, a sample of that class has no other sample of its
    label among its neighbours, and every label of the class would be judged wrong."""
    from noisylabels.errors import InputError

    counts = np.bincount(np.asarray(class_ids, np.int64), minlength=num_classes)
    small = np.flatnonzero((counts > 0) & (counts < MIN_BANK_SAMPLES))
    if small.size:
        raise InputError("class id %d has %d sample(s); the neighbours class score judges a label by the labels of "
                         "other samples and needs at least %d of each class: add samples of that class or pass "
                         "--class_score=references" % (small[0], counts[small[0]], MIN_BANK_SAMPLES),
                         path=path, field="class id")


def _check_class_score(class_score):
    if class_score not in CLASS_SCORES:
        raise ValueError("class_score must be one of %s, got %r" % ("|".join(CLASS_SCORES), class_score))


class ClassEmbeddingScorer:
    """Cosine similarities of samples to their class, with φ_s cached per class (NumPy).

    Args:
      model: a NumpyCleanNet (cleannet.checkpoints.load_inference_model, or
        NumpyCleanNet.from_keras for a Keras CleanNet in memory).
      reference_table: float32 [C, R, h], ref.npy.
      class_chunk: classes encoded per call while filling the cache (bounds memory).
      bank: optional (features float [N, h], class ids int [N]), the labelled samples of the
        "neighbours" class score (all.npy).
    """

    def __init__(self, model: NumpyCleanNet, reference_table: np.ndarray, class_chunk: int = 256,
                 bank: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.model = model
        self.bank = bank
        self._bank_embeddings = None
        self.reference_table = np.asarray(reference_table, np.float32)
        tables = [model.encode_classes(self.reference_table[i:i + class_chunk])
                  for i in range(0, len(self.reference_table), class_chunk)]
        self.class_embeddings = (np.concatenate(tables) if tables
                                 else np.zeros([0, 0], np.float32))  # [C, 128]
        self.num_classes = len(self.reference_table)
        self._reference_embeddings = None

    def reference_embeddings(self) -> np.ndarray:
        """float32 [C, R, 128]: every reference vector through the query encoder, unit length."""
        if self._reference_embeddings is None:
            table = self.reference_table.reshape(-1, self.reference_table.shape[-1])
            rows = [l2_normalize(self.model.encode_queries(table[i:i + _ENCODE_ROWS]), axis=1)
                    for i in range(0, len(table), _ENCODE_ROWS)]
            self._reference_embeddings = np.concatenate(rows).reshape(self.reference_table.shape[:2] + (-1,))
        return self._reference_embeddings

    def bank_embeddings(self) -> np.ndarray:
        """float32 [N, 128]: the bank's samples through the query encoder, unit length."""
        if self.bank is None:
            raise ValueError("the neighbours class score needs a bank of labelled samples (all.npy)")
        if self._bank_embeddings is None:
            features = self.bank[0]
            rows = [l2_normalize(self.model.encode_queries(np.asarray(features[i:i + _ENCODE_ROWS], np.float32)),
                                 axis=1) for i in range(0, len(features), _ENCODE_ROWS)]
            self._bank_embeddings = (np.concatenate(rows) if rows else np.zeros([0, 0], np.float32))
        return self._bank_embeddings

    def _neighbour_votes(self, phi_q):
        """Class scores float32 [b, C]: the share of each class among the NEIGHBOURS nearest bank rows."""
        bank = self.bank_embeddings()
        bank_ids = np.asarray(self.bank[1], np.int64)
        cosines = phi_q @ bank.T  # [b, N]
        cosines[cosines >= SELF_COSINE] = -np.inf
        k = min(NEIGHBOURS, bank.shape[0])
        votes = np.zeros([len(phi_q), self.num_classes], np.float32)
        if k == 0:
            return votes
        nearest = np.argpartition(-cosines, k - 1, axis=1)[:, :k]  # [b, k]
        rows = np.repeat(np.arange(len(phi_q)), k)
        valid = np.isfinite(cosines[rows, nearest.ravel()])
        np.add.at(votes, (rows[valid], bank_ids[nearest.ravel()[valid]]), 1.0)
        return votes / np.float32(k)

    def _score_batch(self, features, class_ids):
        return cosine_similarity(self.class_embeddings[class_ids], self.model.encode_queries(features))

    def _score_all_batch(self, features, class_score):
        """Class scores float32 [b, C] of one batch."""
        phi_q = l2_normalize(self.model.encode_queries(features), axis=1)  # [b, 128]
        if class_score == "embedding":
            return phi_q @ l2_normalize(self.class_embeddings, axis=1).T  # [b, C]
        if class_score == "neighbours":
            return self._neighbour_votes(phi_q)
        references = self.reference_embeddings()  # [C, R, 128]
        num_classes, num_ref = references.shape[:2]
        scaled = (phi_q @ references.reshape(num_classes * num_ref, -1).T).reshape(-1, num_classes, num_ref)
        scaled /= np.float32(REFERENCE_TEMPERATURE)
        top = scaled.max(axis=2, keepdims=True)
        log_mean_exp = np.log(np.exp(scaled - top).sum(axis=2)) + top[:, :, 0] - np.float32(math.log(num_ref))
        return np.float32(REFERENCE_TEMPERATURE) * log_mean_exp

    def _against_all_batch(self, features, class_ids, class_score):
        own_similarity = self._score_batch(features, class_ids)
        scores = self._score_all_batch(features, class_score)
        rows = np.arange(len(class_ids))
        own_score = scores[rows, class_ids]
        scores[rows, class_ids] = -np.inf  # only other classes compete
        best = scores.argmax(axis=1).astype(np.int32)
        return own_similarity, own_score, best, scores[rows, best]

    def score_all_classes(self, features: np.ndarray, class_score: str = "references",
                          batch_size: int = 4096) -> np.ndarray:
        """Class scores float32 [n, C] of features [n, h] for every class (see CLASS_SCORES).

        The whole [n, C] matrix is returned: for many samples use `score_against_all`.
        """
        _check_class_score(class_score)
        features = np.asarray(features, dtype=np.float32)
        out = [self._score_all_batch(features[i:i + batch_size], class_score)
               for i in range(0, len(features), batch_size)]
        return np.concatenate(out) if out else np.zeros([0, self.num_classes], np.float32)

    def score_against_all(self, features: np.ndarray, class_ids: np.ndarray, class_score: str = "references",
                          batch_size: int = 4096) -> CrossClassScores:
        """The labelled class's score and the best other class, for features [n, h], class ids [n].

        Only one batch's scores exist at a time. With a single class there is no other
        class: best_other_class is -1 and best_other_score -inf.

        Returns:
          CrossClassScores; its `similarity` equals `score(features, class_ids, batch_size)`.
        """
        _check_class_score(class_score)
        features = np.asarray(features, dtype=np.float32)
        class_ids = np.asarray(class_ids, dtype=np.int32)
        parts = [self._against_all_batch(features[i:i + batch_size], class_ids[i:i + batch_size], class_score)
                 for i in range(0, len(features), batch_size)]
        if not parts:
            empty = np.zeros([0], np.float32)
            return CrossClassScores(empty, empty, np.zeros([0], np.int32), empty)
        own_similarity, own_score, best, best_score = (np.concatenate(column) for column in zip(*parts))
        best[~np.isfinite(best_score)] = -1
        return CrossClassScores(own_similarity, own_score, best, best_score)

    def score(self, features: np.ndarray, class_ids: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Cosine similarities float32 [n] for features [n, h] and class ids [n]."""
        features = np.asarray(features, dtype=np.float32)
        class_ids = np.asarray(class_ids, dtype=np.int32)
        out = [self._score_batch(features[i:i + batch_size], class_ids[i:i + batch_size])
               for i in range(0, len(features), batch_size)]
        return np.concatenate(out) if out else np.zeros([0], np.float32)


def score_per_sample(model: CleanNet, features: np.ndarray, class_ids: np.ndarray,
                     reference_table: np.ndarray) -> np.ndarray:
    """The original path, in TensorFlow on a Keras CleanNet: each sample's reference set
    gathered and encoded. Returns float32 [n]."""
    import tensorflow as tf

    from cleannet.metrics import similarity

    reference = tf.gather(tf.constant(reference_table, tf.float32), class_ids)
    phi_s, _, phi_q, _ = model((tf.constant(features, tf.float32), reference), training=False)
    return similarity(phi_s, phi_q).numpy()
