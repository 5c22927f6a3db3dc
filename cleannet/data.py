"""CleanNet's training and validation data as index pipelines (docs/originals.md#cleannet-training).

The feature tables (train.npy, val.npy, all.npy, ref.npy) are loaded once into tensors;
the `tf.data` pipelines here produce only integer row indices, and the training step
gathers features, labels and each sample's reference set `ref[class_id]` inside the
graph. No batch of reference vectors is assembled on the host.

Sampling semantics of the original data providers:
- verified (train.npy): a shuffled pass over all rows, reshuffled at each epoch end, and
  a batch that crosses the end wraps around into the next epoch's order;
- unverified (all.npy): for each sample, a class drawn uniformly at random (among the
  classes that have samples), then a sample of that class drawn uniformly;
- validation (val.npy): batches in file order, the last one partial: every row is scored
  (the original dropped the remainder, and refused a val.npy smaller than one batch).

Both training streams are a pure function of (seed, step): a run resumed at step t from
a checkpoint sees exactly the batches an uninterrupted run sees from step t on.
"""

import numpy as np
import tensorflow as tf

from cleannet.datafiles import class_offsets  # noqa: F401  (re-exported: offsets of the grouped all.npy)
from noisylabels.shuffled_order import epoch_shuffled_order


def verified_indices(num_samples: int, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
    """Batches of row indices into train.npy: shuffled per epoch, wrapping around.

    Args:
      num_samples: rows in train.npy, N > 0.
      batch_size: rows per batch.
      seed: the shuffling seed; epoch e uses the permutation seeded by (seed, e)
        (noisylabels.shuffled_order).
      start_step: the first step to produce (for resuming).

    Returns:
      An endless `tf.data.Dataset` of int64 [batch_size].
    """
    order = epoch_shuffled_order(num_samples, seed, start_step * batch_size)
    return order.batch(batch_size, drop_remainder=True)


def unverified_indices(offsets: np.ndarray, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
    """Batches of row indices into the class-grouped all.npy, class-balanced.

    Each sample: a class uniform over the classes that have samples, then a row of that
    class uniform. Step t uses the stateless seed (seed, t).

    Args:
      offsets: int64 [C + 1], class c's rows are offsets[c]:offsets[c+1] (class_offsets).
      batch_size: samples per batch.
      seed: the sampling seed.
      start_step: the first step to produce.

    Returns:
      An endless `tf.data.Dataset` of int64 [batch_size].
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    present = np.flatnonzero(counts > 0)
    if present.size == 0:
        raise ValueError("all.npy has no samples")
    present_starts = tf.constant(offsets[present], tf.int64)
    present_counts = tf.constant(counts[present], tf.int64)
    num_present = len(present)

    def sample(step):
        step_seed = tf.stack([tf.cast(seed, tf.int64), step])
        pick = tf.random.stateless_uniform([batch_size], seed=step_seed, minval=0, maxval=num_present,
                                           dtype=tf.int64)
        uniform = tf.random.stateless_uniform([batch_size], seed=step_seed + [0, 1 << 40], dtype=tf.float64)
        count = tf.gather(present_counts, pick)
        within = tf.minimum(tf.cast(uniform * tf.cast(count, tf.float64), tf.int64), count - 1)
        return tf.gather(present_starts, pick) + within

    return tf.data.Dataset.range(start_step, np.iinfo(np.int64).max).map(sample)


def training_indices(num_verified: int, offsets: np.ndarray | None, batch_size_sup: int, batch_size_unsup: int,
                     seed: int, start_step: int = 0) -> tf.data.Dataset:
    """Zipped (verified, unverified) index batches for the mixed training step.

    With batch_size_unsup = 0 the unverified part is an empty int64 [0] tensor and
    `offsets` may be None (no all.npy is loaded).
    """
    verified = verified_indices(num_verified, batch_size_sup, seed, start_step)
    if batch_size_unsup > 0:
        unverified = unverified_indices(offsets, batch_size_unsup, seed + 1, start_step)
    else:
        unverified = tf.data.Dataset.from_tensors(tf.zeros([0], tf.int64)).repeat()
    return tf.data.Dataset.zip((verified, unverified)).prefetch(tf.data.AUTOTUNE)


def validation_batches(num_samples: int, batch_size: int) -> list[np.ndarray]:
    """Row-index batches over val.npy in order, covering every row (the last may be shorter).

    Returns:
      A list of int64 arrays [batch_size], the last [num_samples mod batch_size] when that is not 0.
    """
    return [np.arange(start, min(start + batch_size, num_samples), dtype=np.int64)
            for start in range(0, num_samples, batch_size)]
