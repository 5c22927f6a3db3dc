"""Testing a stage's net on its test splits, Caffe-style, with the TensorBoard views.

Each test is one pass over a split in file order (inference mode). Accuracy and loss are
over the samples whose label in the tested column is known (≠ −1): accuracy = correct /
labelled, loss = Σ CE / labelled. Written per test split with tag prefix P ("test", and on
Clothing1M "val"): `P/accuracy`, `P/loss`, and the views of noise_model/training/summaries.py
(`P/confusion_matrix[_table]`; `P/noise_type_posterior[_table]` where the stage has a
noise-type net).
"""

import dataclasses
from typing import Callable, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from noise_model.model import layers
from noise_model.training import summaries
from noise_model.protocol import NOISY_COLUMN, NTYPE_COLUMN, NUM_NOISE_TYPES


def make_eval_step(net: keras.Model, label_column: int, image_size: int,
                   ntype_net: Optional[keras.Model] = None) -> Callable:
    """A tf.function (images float32 [B, s, s, 3], labels int64 [B, 3]) → (Σ CE over the
    labelled samples [], correct [], labelled count [], predictions int64 [B], p(z|x)
    float32 [B, 3] of `ntype_net` ([B, 0] without one))."""
    spec = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32), tf.TensorSpec([None, 3], tf.int64)]

    @tf.function(input_signature=spec)
    def eval_step(images, labels):
        logits = net(images, training=False)
        targets = labels[:, label_column]
        batch = tf.cast(tf.shape(targets)[0], tf.float32)
        ce_sum = layers.masked_cross_entropy(targets, logits) * batch
        correct, count = layers.masked_accuracy(targets, logits)
        predictions = tf.argmax(logits, axis=1)
        if ntype_net is None:
            ntype_probs = tf.zeros([tf.shape(images)[0], 0], tf.float32)
        elif ntype_net is net:
            ntype_probs = tf.nn.softmax(logits)
        else:
            ntype_probs = tf.nn.softmax(ntype_net(images, training=False))
        return ce_sum, correct, count, predictions, ntype_probs

    return eval_step


@dataclasses.dataclass
class SplitTest:
    """One test split of a stage: its tag prefix, split name, label column, data and step."""
    prefix: str
    split: str
    column: int
    data: tf.data.Dataset
    eval_step: Callable


@dataclasses.dataclass
class _SplitResult:
    accuracy: float
    loss: float
    targets: np.ndarray      # int64 [n], the tested column
    noisy: np.ndarray        # int64 [n], the noisy labels
    predictions: np.ndarray  # int64 [n]
    ntype_probs: np.ndarray  # float32 [n, 3] or [n, 0]


def _run_split(test: SplitTest, iteration: int) -> _SplitResult:
    """One pass over a split; logs Caffe's test lines."""
    ce_sum, correct, count = 0.0, 0.0, 0.0
    targets, noisy, predictions, ntype_probs = [], [], [], []
    for images, labels in test.data:
        batch_ce, batch_correct, batch_count, batch_pred, batch_probs = test.eval_step(images, labels)
        ce_sum += float(batch_ce)
        correct += float(batch_correct)
        count += float(batch_count)
        labels = labels.numpy()
        targets.append(labels[:, test.column])
        noisy.append(labels[:, NOISY_COLUMN])
        predictions.append(batch_pred.numpy())
        ntype_probs.append(batch_probs.numpy())
    if not count:
        logging.warning("Split %s has no labelled sample: accuracy and loss reported as 0", test.split)
    accuracy = correct / count if count else 0.0
    loss = ce_sum / count if count else 0.0
    logging.info("Iteration %d, Testing net (%s: %d labelled samples)", iteration, test.split, int(count))
    logging.info("    Test net output: accuracy = %.4f", accuracy)
    logging.info("    Test net output: loss = %.6g", loss)
    join = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros([0], dtype)  # noqa: E731
    return _SplitResult(accuracy, loss, join(targets, np.int64), join(noisy, np.int64),
                        join(predictions, np.int64), np.concatenate(ntype_probs) if ntype_probs else None)


def evaluate(tests: List[SplitTest], iteration: int, writer: tf.summary.SummaryWriter,
             num_classes: int) -> Dict[str, float]:
    """Runs every test split once and writes its scalars and views at `iteration`.

    Returns:
      dict tag → float: "PREFIX/accuracy" and "PREFIX/loss" per test split.
    """
    metrics = {}
    results = []
    for test in tests:
        result = _run_split(test, iteration)
        results.append((test, result))
        metrics["%s/accuracy" % test.prefix] = result.accuracy
        metrics["%s/loss" % test.prefix] = result.loss
    with writer.as_default():
        for tag, value in metrics.items():
            tf.summary.scalar(tag, float(value), step=iteration)
        for test, result in results:
            if result.ntype_probs is None:
                continue  # an empty split
            classes = NUM_NOISE_TYPES if test.column == NTYPE_COLUMN else num_classes
            summaries.write_confusion(test.prefix, result.targets, result.predictions, classes, iteration)
            if result.ntype_probs.shape[1]:
                summaries.write_noise_type_posterior(test.prefix, result.ntype_probs, result.noisy, num_classes,
                                                     iteration)
    writer.flush()
    return metrics
