"""Trains a classifier on image features with CleanNet's per-sample weights (the paper's use).

    python inference.py --mode=inference --image_feature_list=all.tsv --output_weights=W.tsv ...
    python train_classifier.py --train_tsv=all.tsv --test_tsv=test.tsv --class_list=classes.txt \\
        --weights_file=W.tsv --weighting=soft --img_dim=2048 --train_dir=classifier/

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
[dense --hidden_units ReLU, if > 0] → dense num_class (softmax logits). Loss: the weighted
cross-entropy Σ_i w_i·CE_i / batch size (Keras' sample-weight convention), Adam.
TensorBoard (--train_dir/log): train/loss, train/accuracy (weighted share of training
samples predicted as their label) per epoch, test/accuracy per epoch. Checkpoints:
--train_dir/checkpoints (tf.train.CheckpointManager); a run restarts from the last one.
An image-list mode with a CNN backbone is not provided: extract features first.

From Python: `train_classifier(...)` returns the final test accuracy.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging

from util.errors import InputError, check_flag, cli_main

WEIGHTINGS = ("none", "soft", "hard")
LAYOUTS = ("all", "verified")
WEIGHTS_HEADER = ["key", "class_name", "soft_weight", "hard_weight"]


def load_samples(path, class_names, layout="all", img_dim=None):
    """Reads labelled features.

    Args:
      path: a TSV (layout "all" or "verified") or a .npy from util/convert_data.py.
      class_names: the class list.
      layout: "all" or "verified" (TSV only).
      img_dim: the feature dimension (required for .npy; checked for TSV when given).

    Returns:
      (keys: list of N str, features: float32 [N, h], labels: int64 [N] class ids).
    """
    import numpy as np

    from util import fileio, tsv_reader

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
    kind = "all" if layout == "all" else "verified"
    for chunk in tsv_reader.iter_tsv_chunks(path, kind, tsv_reader.make_class_to_id(class_names), img_dim=img_dim):
        keys.extend(chunk.keys)
        features.append(chunk.features)
        labels.append(chunk.class_ids.astype(np.int64))
    return keys, np.concatenate(features), np.concatenate(labels)


def read_weights(path):
    """Reads inference.py's --output_weights TSV. Returns {key: (class_name, soft, hard)}."""
    weights = {}
    try:
        f = open(path, encoding="utf-8")
    except OSError as err:
        raise InputError("cannot read (%s)" % (err.strerror or err), path=path) from None
    with f:
        for line_no, line in enumerate(f, 1):
            fields = line.rstrip("\r\n").split("\t")
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
            try:
                soft, hard = float(soft), float(hard)
            except ValueError:
                raise InputError("soft_weight and hard_weight must be numbers", path=path, line=line_no) from None
            if not (soft >= 0 and hard >= 0) or soft == float("inf"):
                raise InputError("weights must be finite and non-negative", path=path, line=line_no)
            if key in weights:
                raise InputError("duplicate key %r" % key, path=path, line=line_no, field="key")
            weights[key] = (name, soft, hard)
    return weights


def sample_weights(keys, labels, class_names, weighting, weights_file=None):
    """Per-sample weights float32 [N] for `weighting`, joined by key from weights_file."""
    import numpy as np

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


def build_classifier(img_dim, num_classes, hidden_units, train_features):
    """Keras model: standardisation → [dense hidden_units ReLU] → dense num_classes logits."""
    import keras

    normalizer = keras.layers.Normalization(axis=-1, name="standardize")
    normalizer.adapt(train_features)
    layers = [keras.Input((img_dim,)), normalizer]
    if hidden_units > 0:
        layers.append(keras.layers.Dense(hidden_units, activation="relu", name="hidden"))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name="classifier")


def train_classifier(train_tsv, class_list, test_tsv=None, weights_file=None, weighting="none", img_dim=None,
                     epochs=20, batch_size=64, learning_rate=0.001, hidden_units=0, train_dir=None, seed=0,
                     train_layout="all"):
    """Trains the classifier and returns the test accuracy (NaN without test_tsv).

    Args: as the command-line flags of the same names (module docstring). train_dir None:
    no checkpoints and no TensorBoard logs.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from util import tsv_reader

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("learning_rate", learning_rate)):
        check_flag(value > 0, name, "must be positive, got %r" % value)
    check_flag(hidden_units >= 0, "hidden_units", "must be 0 (linear softmax) or more, got %d" % hidden_units)
    check_flag(img_dim is None or img_dim > 0, "img_dim", "must be positive, got %r" % img_dim)
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
    optimizer = keras.optimizers.Adam(learning_rate)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    manager = writer = None
    if train_dir:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
        manager = tf.train.CheckpointManager(checkpoint, os.path.join(train_dir, "checkpoints"), max_to_keep=3)
        if manager.latest_checkpoint:
            try:
                checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            except (ValueError, AssertionError, tf.errors.OpError) as err:
                raise InputError("cannot resume from this checkpoint (made with other flags? %s); use "
                                 "another --train_dir" % str(err).splitlines()[0],
                                 path=manager.latest_checkpoint, field="--train_dir") from None
            logging.info("Restored %s (epoch %d)", manager.latest_checkpoint, int(epoch.numpy()))
        writer = tf.summary.create_file_writer(os.path.join(train_dir, "log"))

    dataset = (tf.data.Dataset.from_tensor_slices((features, labels, weights))
               .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
               .batch(batch_size))

    @tf.function(reduce_retracing=True)
    def train_step(x, y, w):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_sum(w * ce) / tf.cast(tf.shape(y)[0], tf.float32)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float32)
        return loss, tf.reduce_sum(w * correct), tf.reduce_sum(w)

    def test_accuracy():
        if test is None:
            return float("nan")
        logits = model.predict(test[0], batch_size=4096, verbose=0)
        return float(np.mean(np.argmax(logits, axis=1) == test[1]))

    from util.progress import Progress

    accuracy = test_accuracy() if int(epoch.numpy()) >= epochs else float("nan")
    with Progress(total=epochs, unit="epochs", desc="classifier", log_every_s=0,
                  initial=min(int(epoch.numpy()), epochs)) as progress:
        while int(epoch.numpy()) < epochs:
            losses, hits, mass = [], 0.0, 0.0
            for x, y, w in dataset:
                loss, h, m = train_step(x, y, w)
                losses.append(float(loss))
                hits, mass = hits + float(h), mass + float(m)
            epoch.assign_add(1)
            step = int(epoch.numpy())
            train_loss, train_acc = float(np.mean(losses)), hits / max(mass, 1e-12)
            accuracy = test_accuracy()
            if writer is not None:
                with writer.as_default(step=step):
                    tf.summary.scalar("train/loss", train_loss)
                    tf.summary.scalar("train/accuracy", train_acc)
                    if test is not None:
                        tf.summary.scalar("test/accuracy", accuracy)
                writer.flush()
            if manager is not None:
                manager.save(checkpoint_number=step)
            progress.update(1, postfix="loss %.4f, train acc %.4f, test acc %.4f" % (train_loss, train_acc, accuracy))
    return accuracy


def define_flags():
    flags.DEFINE_string("train_tsv", None, "Training features with their (noisy) labels: TSV or .npy.")
    flags.DEFINE_enum("train_layout", "all", list(LAYOUTS),
                      "Layout of --train_tsv: all (key, [url,] class_name, feature) or verified "
                      "(key, [url,] class_name, vlabel, feature).")
    flags.DEFINE_string("test_tsv", None, "Test features with their TRUE labels, all-samples layout (or .npy).")
    flags.DEFINE_string("class_list", None, "List of class names, one per line.")
    flags.DEFINE_string("weights_file", None, "Sample weights from inference.py --output_weights.")
    flags.DEFINE_enum("weighting", "none", list(WEIGHTINGS),
                      "none: weight 1; soft: max(0, cos); hard: 1[cos >= threshold].")
    flags.DEFINE_integer("img_dim", None, "Feature dimension (required for .npy; default: the TSV's).")
    flags.DEFINE_integer("epochs", 20, "Passes over the training data.")
    flags.DEFINE_integer("batch_size", 64, "Training batch size.")
    flags.DEFINE_float("learning_rate", 0.001, "Adam learning rate.")
    flags.DEFINE_integer("hidden_units", 0, "Units of the hidden ReLU layer; 0: a linear softmax classifier.")
    flags.DEFINE_string("train_dir", None, "Checkpoints (train_dir/checkpoints) and TensorBoard logs "
                        "(train_dir/log); none written when empty.")
    flags.DEFINE_integer("seed", 0, "Seed of the initialisation and the shuffling.")


def main(argv):
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "train_tsv", "unexpected arguments %s" % argv[1:])
    check_flag(bool(FLAGS.train_tsv), "train_tsv", "is required")
    check_flag(bool(FLAGS.class_list), "class_list", "is required")
    accuracy = train_classifier(FLAGS.train_tsv, FLAGS.class_list, test_tsv=FLAGS.test_tsv,
                                weights_file=FLAGS.weights_file, weighting=FLAGS.weighting, img_dim=FLAGS.img_dim,
                                epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                                learning_rate=FLAGS.learning_rate, hidden_units=FLAGS.hidden_units,
                                train_dir=FLAGS.train_dir, seed=FLAGS.seed, train_layout=FLAGS.train_layout)
    if FLAGS.test_tsv:
        print("test accuracy = %.6f" % accuracy)


def run():
    """Console entry point (cleannet-train-classifier)."""
    define_flags()
    app.run(cli_main(main))


if __name__ == "__main__":
    run()
