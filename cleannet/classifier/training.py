"""Training the classifier: `model.fit` on sample-weighted batches with Keras callbacks.

`fit_weighted` is the training both modes share (weighted cross-entropy, Adam, resume from
--train_dir's Keras BackupAndRestore state, a stop on a non-finite loss, progress,
TensorBoard logs); `train_classifier` (features) and `train_image_classifier` (image lists)
read their data, build their model and return the final test accuracy.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from absl import logging

from cleannet import tsv_reader
from cleannet.classifier.data import load_samples, read_images
from cleannet.classifier.model import build_classifier, build_image_classifier
from cleannet.classifier.weights import sample_weights
from noisylabels.errors import InputError, TrainingError
from noisylabels.progress import Progress
from noisylabels.run_record import DirectoryLock, check_record, make_record

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

TEST_BATCH_SIZE = 4096  # features per prediction batch (memory only, no effect on results)


def resume_from_backup(backup_dir: str) -> keras.callbacks.BackupAndRestore:
    """Keras' BackupAndRestore, kept after training, restored before fit by its `restore(model, steps_per_epoch)`.

    The state is restored before fit (not in on_train_begin) so that the training data can
    start at the epoch the run stands at; a backup that does not fit the model is an InputError.
    (The subclass is defined here because Keras is imported only when it is needed.)
    """
    import keras

    class ResumeFromBackup(keras.callbacks.BackupAndRestore):
        def restore(self, model: keras.Model, steps_per_epoch: int) -> int:
            """Loads the last backup, if any, into model (weights and optimizer); returns the epochs it finished."""
            self.set_model(model)
            try:
                super().on_train_begin()
            except (ValueError, OSError, KeyError) as err:
                raise InputError("cannot resume from this checkpoint (made with other flags? %s); use another "
                                 "--train_dir" % str(err).splitlines()[0], path=self.backup_dir,
                                 field="--train_dir") from None
            return int(model.optimizer.iterations.numpy()) // steps_per_epoch

        def on_train_begin(self, logs=None):
            """Nothing: `restore` did it."""

    return ResumeFromBackup(backup_dir, save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)


def check_loss_is_finite(batch: int, logs: dict | None = None) -> None:
    """Raises TrainingError when the batch's loss is NaN or infinite (run after every batch, before any backup)."""
    loss = float((logs or {}).get("loss", 0.0))
    if not math.isfinite(loss):
        raise TrainingError("the training loss became %r at batch %d; nothing of this epoch was saved "
                            "(try a lower --learning_rate)" % (loss, batch))


def epoch_progress(epochs: int, initial_epoch: int) -> keras.callbacks.Callback:
    """Epochs done, loss and accuracies through noisylabels.progress (stderr or the log; stdout stays clean)."""
    import keras

    bar = Progress(total=epochs, unit="epochs", desc="classifier", log_every_s=0, initial=initial_epoch).start()
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: bar.update(1, values={k: float(v) for k, v in (logs or {}).items()}),
        on_train_end=lambda logs: bar.close())


def fit_weighted(model: keras.Model, epoch_dataset: Callable[[tf.Tensor], tf.data.Dataset], steps_per_epoch: int,
                 test_data, epochs: int, learning_rate: float, train_dir: str | None = None,
                 callbacks: Sequence[keras.callbacks.Callback] = (), record: dict | None = None) -> float:
    """The training shared by both modes: Keras fit, weighted cross-entropy, Adam.

    Args:
      model: keras.Model, inputs → logits [B, num_classes].
      epoch_dataset: epoch (scalar int64 tensor, 0-based) → tf.data.Dataset of that epoch's
        steps_per_epoch (x, labels int64 [B], sample weights float32 [B]) batches, a pure
        function of the epoch (a stateless shuffle), so that a resumed run trains on the
        epochs an uninterrupted one would have.
      test_data: None, (x, labels) arrays, or a tf.data.Dataset of (x, labels, weights).
      epochs, learning_rate, train_dir: as the flags.
      callbacks: more Keras callbacks, run after the backup and before the logs.
      record: what the run trains on (noisylabels.run_directory.make_record): with
        train_dir, resuming a run made on other data or settings is refused, and the run
        holds train_dir's lock (a second run on it is refused).

    Returns:
      the test accuracy after the last epoch (NaN without test data).
    """
    if not train_dir:
        return _fit(model, epoch_dataset, steps_per_epoch, test_data, epochs, learning_rate, None, callbacks)
    with DirectoryLock(train_dir):
        backup_dir = os.path.join(train_dir, "checkpoints")
        check_record(train_dir, record or {"data": {}, "settings": {}},
                     resuming=os.path.isdir(backup_dir) and bool(os.listdir(backup_dir)))
        return _fit(model, epoch_dataset, steps_per_epoch, test_data, epochs, learning_rate, train_dir, callbacks)


def _fit(model, epoch_dataset, steps_per_epoch, test_data, epochs, learning_rate, train_dir, callbacks):
    """fit_weighted's training once train_dir (if any) is locked and checked."""
    import keras
    import tensorflow as tf

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    every, start = [keras.callbacks.LambdaCallback(on_train_batch_end=check_loss_is_finite)], 0
    if train_dir:
        backup = resume_from_backup(os.path.join(train_dir, "checkpoints"))
        start = backup.restore(model, steps_per_epoch)
        every.insert(0, backup)
    every += list(callbacks)
    if start < epochs:
        every.append(epoch_progress(epochs, start))
    if train_dir:
        every.append(keras.callbacks.TensorBoard(os.path.join(train_dir, "log"), write_graph=False,
                                                 profile_batch=0))
    data = tf.data.Dataset.range(start, max(start, epochs)).flat_map(epoch_dataset)
    history = model.fit(data, epochs=epochs, initial_epoch=start, steps_per_epoch=steps_per_epoch,
                        validation_data=test_data,
                        validation_batch_size=TEST_BATCH_SIZE if isinstance(test_data, tuple) else None,
                        callbacks=every, shuffle=False, verbose=0)
    if test_data is None:
        return float("nan")
    if history.history.get("val_accuracy"):
        return float(history.history["val_accuracy"][-1])
    batch_size = TEST_BATCH_SIZE if isinstance(test_data, tuple) else None  # a run already finished
    x, y = test_data if isinstance(test_data, tuple) else (test_data, None)
    return float(model.evaluate(x, y, batch_size=batch_size, return_dict=True, verbose=0)["accuracy"])


def train_classifier(train_tsv: str, class_list: str, test_tsv: str | None = None, weights_file: str | None = None,
                     weighting: str = "none", img_dim: int | None = None, epochs: int = 20, batch_size: int = 64,
                     learning_rate: float = 0.001, hidden_units: int = 0, train_dir: str | None = None,
                     seed: int = 0, train_layout: str = "all",
                     callbacks: Sequence[keras.callbacks.Callback] = ()) -> float:
    """Trains the classifier on features and returns the test accuracy (NaN without test_tsv).

    Args: as the command-line flags of the same names (cleannet/tools/train_classifier.py), with
    the values the flags allow (epochs, batch_size, learning_rate, img_dim > 0; hidden_units >= 0).
    train_dir None: no checkpoints and no TensorBoard logs. callbacks: more Keras callbacks for fit.
    """
    import keras
    import tensorflow as tf

    from cleannet import image_input

    class_names = tsv_reader.read_class_list(class_list)
    keys, features, labels = load_samples(train_tsv, class_names, train_layout, img_dim)
    img_dim = features.shape[1]
    weights = sample_weights(keys, labels, class_names, weighting, weights_file)
    test = None
    if test_tsv:
        _, test_features, test_labels = load_samples(test_tsv, class_names, "all", img_dim)
        test = (test_features, test_labels)
    logging.info("%d training samples (%d with weight > 0, weighting %s), %d classes, %d dims",
                 len(keys), int(np.count_nonzero(weights)), weighting, len(class_names), img_dim)

    keras.utils.set_random_seed(seed)
    model = build_classifier(img_dim, len(class_names), hidden_units, features)
    table = tuple(tf.constant(a) for a in (features, labels, weights))

    def epoch_dataset(epoch):
        order = image_input.shuffled_order(len(labels), seed, epoch)
        return (tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
                .map(lambda rows: tuple(tf.gather(a, rows) for a in table)))

    files = {"train_tsv": train_tsv, "class_list": class_list, "weights_file": weights_file}
    record = make_record({k: v for k, v in files.items() if v},
                         dict(weighting=weighting, img_dim=img_dim, hidden_units=hidden_units, batch_size=batch_size,
                              seed=seed, train_layout=train_layout))
    return fit_weighted(model, epoch_dataset, math.ceil(len(labels) / batch_size), test, epochs, learning_rate,
                        train_dir, callbacks, record)


def train_image_classifier(train_images: str, class_list: str, test_images: str | None = None,
                           image_root: str | None = None, backbone: str = "resnet50",
                           backbone_weights: str | None = None, image_size: int = 224, freeze_backbone: bool = False,
                           skip_bad_images: bool = False, weights_file: str | None = None, weighting: str = "none",
                           epochs: int = 20, batch_size: int = 64, learning_rate: float = 0.001,
                           hidden_units: int = 0, train_dir: str | None = None, seed: int = 0,
                           callbacks: Sequence[keras.callbacks.Callback] = ()) -> float:
    """Trains a backbone + head on image lists and returns the test accuracy (NaN without test_images).

    Args: as the command-line flags of the same names (cleannet/tools/train_classifier.py,
    cleannet/image_input.py for the list format), with the values the flags allow (epochs,
    batch_size, learning_rate > 0; hidden_units >= 0; image_size >= 32). train_dir None: no
    checkpoints and no TensorBoard logs. callbacks: more Keras callbacks for fit.
    """
    import keras

    from cleannet import image_input

    class_names = tsv_reader.read_class_list(class_list)
    train, test = read_images(train_images, test_images, class_names, image_root, skip_bad_images)
    weights = sample_weights(train.keys, train.labels, class_names, weighting, weights_file)
    logging.info("%d training images (%d with weight > 0, weighting %s), %d classes, backbone %s at %d px",
                 len(train), int(np.count_nonzero(weights)), weighting, len(class_names), backbone, image_size)

    keras.utils.set_random_seed(seed)
    model = build_image_classifier(backbone, len(class_names), image_size, hidden_units, backbone_weights,
                                   freeze_backbone)

    def epoch_dataset(epoch):
        return image_input.make_image_dataset(train.paths, train.labels, weights, image_size, backbone,
                                              batch_size, training=True, seed=seed, epoch=epoch)

    test_data = None
    if test is not None and len(test):
        test_data = image_input.make_image_dataset(test.paths, test.labels, np.ones(len(test), np.float32),
                                                   image_size, backbone, batch_size, training=False)
    files = {"train_images": train_images, "class_list": class_list, "weights_file": weights_file}
    record = make_record({k: v for k, v in files.items() if v},
                         dict(weighting=weighting, backbone=backbone, image_size=image_size, hidden_units=hidden_units,
                              batch_size=batch_size, seed=seed, freeze_backbone=freeze_backbone))
    return fit_weighted(model, epoch_dataset, math.ceil(len(train) / batch_size), test_data, epochs,
                        learning_rate, train_dir, callbacks, record)
