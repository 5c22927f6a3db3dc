"""The stateless per-epoch shuffle stream both training systems draw their batches from.

Epoch e visits range(num_samples) in the permutation seeded by (seed, e) (a stateless
shuffle, so the same in every run and on every machine); epochs follow each other without
a break, so a batch that crosses an epoch end wraps into the next epoch. The stream is a
pure function of (seed, position): a run resumed at stream position p sees exactly the
rows an uninterrupted run sees from p on, with nothing about the pipeline checkpointed.
Used by CleanNet's verified batches (cleannet/data.py) and the noisy-label model's
training batches (noise_model/data/datasets.py).
"""

import numpy as np
import tensorflow as tf


def epoch_shuffled_order(num_samples: int, seed: int, start_position: int = 0) -> tf.data.Dataset:
    """The stream's row indices from stream position `start_position` on.

    Args:
      num_samples: rows to shuffle, N > 0.
      seed: int, the order's seed.
      start_position: the first stream position produced (step · batch size to resume at
        a step).

    Returns:
      An endless `tf.data.Dataset` of row indices (int64 scalars).
    """
    first_epoch, offset = divmod(int(start_position), int(num_samples))

    def epoch_order(epoch):
        return tf.data.Dataset.from_tensor_slices(tf.random.experimental.stateless_shuffle(
            tf.range(num_samples, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), epoch])))

    return tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_order).skip(offset)
