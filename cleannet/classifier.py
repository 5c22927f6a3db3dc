"""Trains a classifier on features or on images (CNN backbone) with CleanNet's per-sample weights.

    python inference.py --mode=inference --image_feature_list=all.tsv --output_weights=W.tsv ...
    cleannet-train-classifier --train_tsv=all.tsv --test_tsv=test.tsv --class_list=classes.txt \\
        --weights_file=W.tsv --weighting=soft --img_dim=2048 --train_dir=classifier/

(`python train_classifier.py ...` from a checkout is the same tool.)

Inputs:
  --train_tsv   training features with their (noisy) labels: an all-samples TSV (key, [url,]
                class_name, feature; --train_layout=all, the default), a verified TSV (key,
                [url,] class_name, vlabel, feature; --train_layout=verified; vlabel is
                ignored, every row is used), or a .npy written by util/convert_data.py
                (all.npy [N, h+1] or train/val.npy [N, h+2]; keys are the 0-based row numbers).
  --test_tsv    test features with their TRUE labels, all-samples layout (or .npy).
  --weights_file  inference.py --output_weights: key, class_name, soft_weight, hard_weight
                with a header. Joined to the training samples by key; a training key without
                a weight, or with a weight written for another class, is an error.
  --weighting   none: every sample weight 1; soft: max(0, cos); hard: 1[cos >= threshold].

Model: standardisation of the features (mean and variance of the training features) →
[dense --hidden_units ReLU, if > 0] → dense num_class (softmax logits). Training is Keras'
`model.fit` on (x, y, sample_weight) batches: loss Σ_i w_i·CE_i / batch size (Keras'
sample-weight convention), Adam; "accuracy" is the weighted share of training samples
predicted as their label, "val_accuracy" the plain test accuracy.

--train_dir: Keras' BackupAndRestore state in --train_dir/checkpoints (the weights and the
optimizer after the last finished epoch, kept after training: a killed or finished run
started again with the same flags, and any larger --epochs, continues from there; the
epochs it trains are the ones an uninterrupted run would have trained, bit for bit) and
Keras' TensorBoard logs in --train_dir/log (runs "train" and "validation": epoch_loss,
epoch_accuracy per epoch).

Image-list mode (instead of --train_tsv / --test_tsv): a CNN backbone and the same head,
trained end to end on the images (or only the head with --freeze_backbone):

    cleannet-train-classifier --train_images=train_list.txt --test_images=test_list.txt \\
        --image_root=images/ --class_list=classes.txt --weights_file=W.tsv --weighting=hard \\
        --backbone=resnet50 --backbone_weights=resnet50_notop.h5 --train_dir=classifier/

  --train_images, --test_images  lines key<TAB>image path<TAB>class_name (format and
                pipeline: cleannet/image_input.py); weights joined by key as above.
  --image_root  relative paths are joined to it and must stay inside it (default: the
                list file's directory); a missing image or a path leaving the root is an
                error naming the list file and line; an undecodable image too, unless
                --skip_bad_images (dropped and counted).
  --backbone    resnet50 | mobilenet_v2 (keras.applications, weights=None: nothing is
                downloaded) | small_cnn; --backbone_weights loads a Keras weights file of
                the backbone without its top (e.g. ImageNet weights you have).
  --image_size  images resized to this square (default 224, at least 32).

From Python: `train_classifier(...)` (features) and `train_image_classifier(...)` (image
lists) return the final test accuracy. Keras and TensorFlow are imported by the functions
that use them, so that the command line's flag and file errors come before they load.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from absl import flags, logging

from cleannet.choices import IMAGE_BACKBONES
from noisylabels import fileio
from cleannet import tsv_reader
from noisylabels.errors import InputError, TrainingError, check_flag
from noisylabels.flagutil import define_finite_float, define_img_dim, run_tool
from noisylabels.progress import Progress
from noisylabels.run_record import DirectoryLock, check_record, make_record

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

WEIGHTINGS = ("none", "soft", "hard")
LAYOUTS = ("all", "verified")
WEIGHTS_HEADER = ["key", "class_name", "soft_weight", "hard_weight"]
TEST_BATCH_SIZE = 4096  # features per prediction batch (memory only, no effect on results)


def load_samples(path: str, class_names: Sequence[str], layout: str = "all", img_dim: int | None = None):
    """Reads labelled features.

    Args:
      path: a TSV (layout "all" or "verified") or a .npy from util/convert_data.py.
      class_names: the class list.
      layout: "all" or "verified" (TSV only).
      img_dim: the feature dimension (required for .npy; checked for TSV when given).

    Returns:
      (keys: list of N str, features: float32 [N, h], labels: int64 [N] class ids).
    """
    if layout not in LAYOUTS:
        raise InputError("must be one of %s, got %r" % ("|".join(LAYOUTS), layout), field="--train_layout")
    if path.endswith(".npy"):
        if not img_dim:
            raise InputError("--img_dim is required to read a .npy", path=path, field="--img_dim")
        array = fileio.load_npy(path, ndim=2)
        if array.shape[1] not in (img_dim + 1, img_dim + 2):
            raise InputError("has %d columns, expected %d (all.npy) or %d (train/val.npy) for --img_dim=%d"
                             % (array.shape[1], img_dim + 1, img_dim + 2, img_dim), path=path)
        labels = array[:, img_dim]
        if not np.all((labels == np.round(labels)) & (labels >= 0) & (labels < len(class_names))):
            raise InputError("class ids must be integers in [0, %d)" % len(class_names), path=path,
                             field="class_id")
        return ([str(i) for i in range(len(array))], np.ascontiguousarray(array[:, :img_dim], np.float32),
                labels.astype(np.int64))
    keys, features, labels = [], [], []
    for chunk in tsv_reader.iter_tsv_chunks(path, layout, tsv_reader.make_class_to_id(class_names),
                                            img_dim=img_dim):
        keys.extend(chunk.keys)
        features.append(chunk.features)
        labels.append(chunk.class_ids.astype(np.int64))
    return keys, np.concatenate(features), np.concatenate(labels)


def read_weights(path: str) -> dict:
    """Reads inference.py's --output_weights TSV. Returns {key: (class_name, soft, hard)}."""
    from noisylabels.fileio import iter_text_lines
    from noisylabels.strict_numbers import parse_float

    weights = {}
    for line_no, line in iter_text_lines(path, field="--weights_file"):
        fields = line.split("\t")
        if line_no == 1:
            if fields != WEIGHTS_HEADER:
                raise InputError("expected the header %s (inference.py --output_weights)"
                                 % "\\t".join(WEIGHTS_HEADER), path=path, line=1)
            continue
        if fields == [""]:
            continue
        if len(fields) != 4:
            raise InputError("expected 4 tab-separated columns, found %d" % len(fields), path=path, line=line_no)
        key, name, soft, hard = fields
        soft = parse_float(soft, path, line_no, "soft_weight")
        hard = parse_float(hard, path, line_no, "hard_weight")
        if soft < 0 or hard < 0:
            raise InputError("weights must be non-negative", path=path, line=line_no)
        if key in weights:
            raise InputError("duplicate key %r" % key, path=path, line=line_no, field="key")
        weights[key] = (name, soft, hard)
    return weights


def sample_weights(keys: Sequence[str], labels, class_names: Sequence[str], weighting: str,
                   weights_file: str | None = None) -> np.ndarray:
    """Per-sample weights float32 [N] for `weighting`, joined by key from weights_file."""
    if weighting not in WEIGHTINGS:
        raise InputError("must be one of %s, got %r" % ("|".join(WEIGHTINGS), weighting), field="--weighting")
    if weighting == "none":
        return np.ones(len(keys), np.float32)
    if not weights_file:
        raise InputError("--weighting=%s needs --weights_file" % weighting, field="--weights_file")
    table = read_weights(weights_file)
    column = 1 if weighting == "soft" else 2
    out = np.empty(len(keys), np.float32)
    for i, (key, label) in enumerate(zip(keys, labels)):
        if key not in table:
            raise InputError("no weight for training key %r" % key, path=weights_file, field="key")
        entry = table[key]
        if entry[0] != class_names[label]:
            raise InputError("key %r has class %r here but %r in the training data"
                             % (key, entry[0], class_names[label]), path=weights_file, field="class_name")
        out[i] = entry[column]
    if not out.sum() > 0:
        raise InputError("every training sample has weight 0", path=weights_file)
    return out


def build_classifier(img_dim: int, num_classes: int, hidden_units: int, train_features: np.ndarray) -> keras.Model:
    """Keras model: standardisation → [dense hidden_units ReLU] → dense num_classes logits."""
    import keras

    normalizer = keras.layers.Normalization(axis=-1, name="standardize")
    normalizer.adapt(train_features)
    layers = [keras.Input((img_dim,)), normalizer]
    if hidden_units > 0:
        layers.append(keras.layers.Dense(hidden_units, activation="relu", name="hidden"))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name="classifier")


def _small_cnn(shape) -> keras.Model:
    """3 conv 3×3 ReLU layers of 32, 64, 64 filters, 2×2 max-pooling after the first two, global average."""
    import keras

    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
    ], name="small_cnn")


def _build_backbone(backbone: str, image_size: int, backbone_weights: str | None) -> keras.Model:
    """The backbone alone (global average pooling output), weights loaded; InputError if they do not fit."""
    import keras

    shape = (image_size, image_size, 3)
    try:
        if backbone == "resnet50":
            return keras.applications.ResNet50(include_top=False, weights=backbone_weights, input_shape=shape,
                                               pooling="avg")
        if backbone == "mobilenet_v2":
            return keras.applications.MobileNetV2(include_top=False, weights=backbone_weights,
                                                  input_shape=shape, pooling="avg")
        base = _small_cnn(shape)
        if backbone_weights is not None:
            base.load_weights(backbone_weights)
        return base
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise InputError("cannot load these weights into a %s backbone at --image_size=%d (%s)"
                         % (backbone, image_size, str(err).splitlines()[0] if str(err) else type(err).__name__),
                         path=backbone_weights, field="--backbone_weights") from None


def build_image_classifier(backbone: str, num_classes: int, image_size: int, hidden_units: int = 0,
                           backbone_weights: str | None = None, freeze_backbone: bool = False) -> keras.Model:
    """Keras model: backbone (global average pooling) → [dense hidden_units ReLU] → dense logits.

    Args:
      backbone: "resnet50" or "mobilenet_v2" (keras.applications, built with weights=None:
        nothing is downloaded) or "small_cnn" (3 conv 3×3 ReLU layers of 32, 64, 64 filters,
        2×2 max-pooling after the first two).
      num_classes: outputs.
      image_size: input side in pixels (≥ 32).
      hidden_units: units of the ReLU layer of the head; 0: none.
      backbone_weights: a Keras weights file for the backbone alone (e.g. the ImageNet
        "notop" weights of keras.applications), loaded as keras.applications loads its own;
        None: random initialisation.
      freeze_backbone: the backbone is not trained and runs in inference mode (batch
        normalisation statistics frozen); only the head learns.

    Returns:
      keras.Model: float32 [B, image_size, image_size, 3] preprocessed images → logits
      [B, num_classes].
    """
    import keras

    if backbone not in IMAGE_BACKBONES:
        raise InputError("must be one of %s, got %r" % ("|".join(IMAGE_BACKBONES), backbone), field="--backbone")
    if backbone_weights is not None and not os.path.isfile(backbone_weights):
        raise InputError("file not found", path=backbone_weights, field="--backbone_weights")
    base = _build_backbone(backbone, image_size, backbone_weights)
    base.trainable = not freeze_backbone
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = base(inputs, training=False) if freeze_backbone else base(inputs)
    if hidden_units > 0:
        x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="image_classifier")


# ---------------------------------------------------------------------------------------
# Training: model.fit with Keras callbacks.


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

    Args: as the command-line flags of the same names (module docstring), with the values the
    flags allow (epochs, batch_size, learning_rate, img_dim > 0; hidden_units >= 0). train_dir
    None: no checkpoints and no TensorBoard logs. callbacks: more Keras callbacks for fit.
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


def _read_images(train_images, test_images, class_names, image_root, skip_bad_images):
    """(train, test or None) ImageLists, every image checked readable (dropped with --skip_bad_images)."""
    from cleannet import image_input

    train = image_input.read_image_list(train_images, class_names, image_root)
    test = image_input.read_image_list(test_images, class_names, image_root) if test_images else None
    train, skipped = image_input.check_readable(train, skip_bad_images)
    if test is not None:
        test, skipped_test = image_input.check_readable(test, skip_bad_images)
        skipped += skipped_test
    if skipped:
        logging.warning("--skip_bad_images: skipped %d unreadable images", skipped)
    if not len(train):
        raise InputError("no training images", path=train_images)
    return train, test


def train_image_classifier(train_images: str, class_list: str, test_images: str | None = None,
                           image_root: str | None = None, backbone: str = "resnet50",
                           backbone_weights: str | None = None, image_size: int = 224, freeze_backbone: bool = False,
                           skip_bad_images: bool = False, weights_file: str | None = None, weighting: str = "none",
                           epochs: int = 20, batch_size: int = 64, learning_rate: float = 0.001,
                           hidden_units: int = 0, train_dir: str | None = None, seed: int = 0,
                           callbacks: Sequence[keras.callbacks.Callback] = ()) -> float:
    """Trains a backbone + head on image lists and returns the test accuracy (NaN without test_images).

    Args: as the command-line flags of the same names (module docstring,
    cleannet/image_input.py for the list format), with the values the flags allow (epochs,
    batch_size, learning_rate > 0; hidden_units >= 0; image_size >= 32). train_dir None: no
    checkpoints and no TensorBoard logs. callbacks: more Keras callbacks for fit.
    """
    import keras

    from cleannet import image_input

    class_names = tsv_reader.read_class_list(class_list)
    train, test = _read_images(train_images, test_images, class_names, image_root, skip_bad_images)
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


# ---------------------------------------------------------------------------------------
# Command line.


def define_flags() -> None:
    """Defines the tool's flags (same names and defaults as train_classifier.py always had)."""
    flags.DEFINE_string("train_tsv", None, "Training features with their (noisy) labels: TSV or .npy.")
    flags.DEFINE_enum("train_layout", "all", list(LAYOUTS),
                      "Layout of --train_tsv: all (key, [url,] class_name, feature) or verified "
                      "(key, [url,] class_name, vlabel, feature).")
    flags.DEFINE_string("test_tsv", None, "Test features with their TRUE labels, all-samples layout (or .npy).")
    flags.DEFINE_string("class_list", None, "List of class names, one per line.", required=True)
    flags.DEFINE_string("weights_file", None, "Sample weights from inference.py --output_weights.")
    flags.DEFINE_enum("weighting", "none", list(WEIGHTINGS),
                      "none: weight 1; soft: max(0, cos); hard: 1[cos >= threshold].")
    define_img_dim(None, " Required for .npy; default: the TSV's.")
    flags.DEFINE_integer("epochs", 20, "Passes over the training data.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Training batch size.", lower_bound=1)
    define_finite_float("learning_rate", 0.001, "Adam learning rate.", above=0.0)
    flags.DEFINE_integer("hidden_units", 0, "Units of the hidden ReLU layer; 0: a linear softmax classifier.",
                         lower_bound=0)
    flags.DEFINE_string("train_dir", None, "Resume state (train_dir/checkpoints, Keras BackupAndRestore) and "
                        "TensorBoard logs (train_dir/log); none written when empty.")
    flags.DEFINE_integer("seed", 0, "Seed of the initialisation, the shuffling and the mirroring.")
    flags.DEFINE_string("train_images", None, "Image-list mode: training images with their (noisy) labels, "
                        "lines key<TAB>image path<TAB>class_name (instead of --train_tsv).")
    flags.DEFINE_string("test_images", None, "Image-list mode: test images with their TRUE labels, same format.")
    flags.DEFINE_string("image_root", None, "Relative image paths are joined to it and must stay inside it; "
                        "default: the directory of each list file.")
    flags.DEFINE_enum("backbone", "resnet50", list(IMAGE_BACKBONES),
                      "Image-list mode: the CNN (keras.applications with weights=None, or a small CNN).")
    flags.DEFINE_string("backbone_weights", None, "A Keras weights file for the backbone without its top "
                        "(e.g. ImageNet notop weights you have); default: random initialisation.")
    flags.DEFINE_integer("image_size", 224, "Images are resized to image_size x image_size pixels.", lower_bound=32)
    flags.DEFINE_bool("freeze_backbone", False, "Train only the head; the backbone runs in inference mode.")
    flags.DEFINE_bool("skip_bad_images", False, "Drop (and count) images that cannot be decoded instead of "
                      "stopping with an error naming the first.")
    flags.register_multi_flags_validator(
        ["train_tsv", "train_images"], lambda v: bool(v["train_tsv"]) != bool(v["train_images"]),
        message="give exactly one of --train_tsv (features) and --train_images (image list)")
    flags.register_multi_flags_validator(
        ["train_tsv", "test_images"], lambda v: not (v["train_tsv"] and v["test_images"]),
        message="--test_images goes with --train_images, not --train_tsv")
    flags.register_multi_flags_validator(
        ["train_images", "test_tsv"], lambda v: not (v["train_images"] and v["test_tsv"]),
        message="--test_tsv goes with --train_tsv, not --train_images")
    flags.register_multi_flags_validator(
        ["weighting", "weights_file"], lambda v: v["weighting"] == "none" or bool(v["weights_file"]),
        message="--weighting=soft or hard needs --weights_file")


def check_inputs_exist(names: Sequence[str]) -> None:
    """Fails fast, before TensorFlow loads, when an input file the flags `names` name is missing."""
    FLAGS = flags.FLAGS
    for name in names:
        path = getattr(FLAGS, name)
        if path and not os.path.isfile(path):
            raise InputError("file not found", path=path, field="--" + name)


def main(argv: Sequence[str]) -> None:
    """Trains in the mode the flags choose and prints `test accuracy = X` when there is a test set."""
    from noisylabels.console import load_tensorflow

    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "train_tsv", "unexpected arguments %s" % argv[1:])
    check_inputs_exist(["class_list", "train_tsv", "test_tsv", "train_images", "test_images", "backbone_weights"]
                       + (["weights_file"] if FLAGS.weighting != "none" else []))
    load_tensorflow()  # after the flag and file checks: a bad command line fails without loading TensorFlow
    common = dict(weights_file=FLAGS.weights_file, weighting=FLAGS.weighting, epochs=FLAGS.epochs,
                  batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                  hidden_units=FLAGS.hidden_units, train_dir=FLAGS.train_dir, seed=FLAGS.seed)
    if FLAGS.train_tsv:
        accuracy = train_classifier(FLAGS.train_tsv, FLAGS.class_list, test_tsv=FLAGS.test_tsv,
                                    img_dim=FLAGS.img_dim, train_layout=FLAGS.train_layout, **common)
        tested = bool(FLAGS.test_tsv)
    else:
        accuracy = train_image_classifier(FLAGS.train_images, FLAGS.class_list, test_images=FLAGS.test_images,
                                          image_root=FLAGS.image_root, backbone=FLAGS.backbone,
                                          backbone_weights=FLAGS.backbone_weights, image_size=FLAGS.image_size,
                                          freeze_backbone=FLAGS.freeze_backbone,
                                          skip_bad_images=FLAGS.skip_bad_images, **common)
        tested = bool(FLAGS.test_images)
    if tested:
        print("test accuracy = %.6f" % accuracy)


def run() -> None:
    """Console entry point (cleannet-train-classifier)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
