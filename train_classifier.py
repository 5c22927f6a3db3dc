"""Trains a classifier on features or on images (CNN backbone) with CleanNet's per-sample weights.

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

Image-list mode (instead of --train_tsv / --test_tsv): a CNN backbone and the same head,
trained end to end on the images (or only the head with --freeze_backbone):

    python train_classifier.py --train_images=train_list.txt --test_images=test_list.txt \
        --image_root=images/ --class_list=classes.txt --weights_file=W.tsv --weighting=hard \
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
lists) return the final test accuracy.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging

from util.errors import InputError, check_flag, cli_main

WEIGHTINGS = ("none", "soft", "hard")
BACKBONES = ("resnet50", "mobilenet_v2", "small_cnn")  # as cleannet.image_input.BACKBONES
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
    from util.fileio import iter_text_lines
    from util.strict_numbers import parse_float

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


def build_image_classifier(backbone, num_classes, image_size, hidden_units=0, backbone_weights=None,
                           freeze_backbone=False):
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

    from cleannet.image_input import BACKBONES

    if backbone not in BACKBONES:
        raise InputError("must be one of %s, got %r" % ("|".join(BACKBONES), backbone), field="--backbone")
    if backbone_weights is not None and not os.path.isfile(backbone_weights):
        raise InputError("file not found", path=backbone_weights, field="--backbone_weights")
    shape = (image_size, image_size, 3)
    try:
        if backbone == "resnet50":
            base = keras.applications.ResNet50(include_top=False, weights=backbone_weights, input_shape=shape,
                                               pooling="avg")
        elif backbone == "mobilenet_v2":
            base = keras.applications.MobileNetV2(include_top=False, weights=backbone_weights,
                                                  input_shape=shape, pooling="avg")
        else:
            base = keras.Sequential([
                keras.Input(shape),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(2),
                keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(2),
                keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
            ], name="small_cnn")
            if backbone_weights is not None:
                base.load_weights(backbone_weights)
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise InputError("cannot load these weights into a %s backbone at --image_size=%d (%s)"
                         % (backbone, image_size, str(err).splitlines()[0] if str(err) else type(err).__name__),
                         path=backbone_weights, field="--backbone_weights") from None
    base.trainable = not freeze_backbone
    inputs = keras.Input(shape, name="images")
    x = base(inputs, training=False) if freeze_backbone else base(inputs)
    if hidden_units > 0:
        x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="image_classifier")


def _check_training_flags(epochs, batch_size, learning_rate, hidden_units):
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("learning_rate", learning_rate)):
        check_flag(value > 0, name, "must be positive, got %r" % value)
    check_flag(hidden_units >= 0, "hidden_units", "must be 0 (linear softmax) or more, got %d" % hidden_units)


def fit(model, train_batches, evaluate, epochs, learning_rate, train_dir=None):
    """The training loop shared by both modes: weighted cross-entropy, Adam.

    Args:
      model: keras.Model, inputs → logits [B, num_classes].
      train_batches: function epoch (int, 0-based) → iterable of (x, labels int64 [B],
        weights float32 [B]) batches: one pass over the training data.
      evaluate: function () → test accuracy (float; NaN when there is no test set).
      epochs, learning_rate, train_dir: as the flags.

    Returns:
      the test accuracy after the last epoch.
    """
    import numpy as np
    import keras
    import tensorflow as tf

    from util.progress import Progress

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

    accuracy = evaluate() if int(epoch.numpy()) >= epochs else float("nan")
    with Progress(total=epochs, unit="epochs", desc="classifier", log_every_s=0,
                  initial=min(int(epoch.numpy()), epochs)) as progress:
        while int(epoch.numpy()) < epochs:
            losses, hits, mass = [], 0.0, 0.0
            for x, y, w in train_batches(int(epoch.numpy())):
                loss, h, m = train_step(x, y, w)
                losses.append(float(loss))
                hits, mass = hits + float(h), mass + float(m)
            epoch.assign_add(1)
            step = int(epoch.numpy())
            train_loss, train_acc = float(np.mean(losses)), hits / max(mass, 1e-12)
            accuracy = evaluate()
            if writer is not None:
                with writer.as_default(step=step):
                    tf.summary.scalar("train/loss", train_loss)
                    tf.summary.scalar("train/accuracy", train_acc)
                    if accuracy == accuracy:
                        tf.summary.scalar("test/accuracy", accuracy)
                writer.flush()
            if manager is not None:
                manager.save(checkpoint_number=step)
            progress.update(1, postfix="loss %.4f, train acc %.4f, test acc %.4f" % (train_loss, train_acc, accuracy))
    return accuracy


def train_classifier(train_tsv, class_list, test_tsv=None, weights_file=None, weighting="none", img_dim=None,
                     epochs=20, batch_size=64, learning_rate=0.001, hidden_units=0, train_dir=None, seed=0,
                     train_layout="all"):
    """Trains the classifier on features and returns the test accuracy (NaN without test_tsv).

    Args: as the command-line flags of the same names (module docstring). train_dir None:
    no checkpoints and no TensorBoard logs.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from util import tsv_reader

    _check_training_flags(epochs, batch_size, learning_rate, hidden_units)
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
    dataset = (tf.data.Dataset.from_tensor_slices((features, labels, weights))
               .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
               .batch(batch_size))

    def test_accuracy():
        if test is None:
            return float("nan")
        logits = model.predict(test[0], batch_size=4096, verbose=0)
        return float(np.mean(np.argmax(logits, axis=1) == test[1]))

    return fit(model, lambda epoch: dataset, test_accuracy, epochs, learning_rate, train_dir)


def train_image_classifier(train_images, class_list, test_images=None, image_root=None, backbone="resnet50",
                           backbone_weights=None, image_size=224, freeze_backbone=False, skip_bad_images=False,
                           weights_file=None, weighting="none", epochs=20, batch_size=64, learning_rate=0.001,
                           hidden_units=0, train_dir=None, seed=0):
    """Trains a backbone + head on image lists and returns the test accuracy (NaN without test_images).

    Args: as the command-line flags of the same names (module docstring,
    cleannet/image_input.py for the list format). train_dir None: no checkpoints and no
    TensorBoard logs.
    """
    import keras
    import numpy as np

    from cleannet import image_input
    from util import tsv_reader

    _check_training_flags(epochs, batch_size, learning_rate, hidden_units)
    check_flag(backbone in image_input.BACKBONES, "backbone",
               "must be one of %s, got %r" % ("|".join(image_input.BACKBONES), backbone))
    check_flag(image_size >= 32, "image_size", "must be at least 32 pixels, got %r" % image_size)
    class_names = tsv_reader.read_class_list(class_list)
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
    weights = sample_weights(train.keys, train.labels, class_names, weighting, weights_file)
    logging.info("%d training images (%d with weight > 0, weighting %s), %d classes, backbone %s at %d px",
                 len(train), int(np.count_nonzero(weights)), weighting, len(class_names), backbone, image_size)

    keras.utils.set_random_seed(seed)
    model = build_image_classifier(backbone, len(class_names), image_size, hidden_units, backbone_weights,
                                   freeze_backbone)

    def train_batches(epoch):
        return image_input.make_image_dataset(train.paths, train.labels, weights, image_size, backbone,
                                              batch_size, training=True, seed=seed, epoch=epoch)

    test_data = None
    if test is not None:
        test_data = image_input.make_image_dataset(test.paths, test.labels, np.ones(len(test), np.float32),
                                                   image_size, backbone, batch_size, training=False)

    def test_accuracy():
        if test_data is None or not len(test):
            return float("nan")
        hits = 0
        for x, y, _ in test_data:
            hits += int(np.sum(np.argmax(model(x, training=False), axis=1) == y.numpy()))
        return hits / len(test)

    return fit(model, train_batches, test_accuracy, epochs, learning_rate, train_dir)


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
    flags.DEFINE_integer("seed", 0, "Seed of the initialisation, the shuffling and the mirroring.")
    flags.DEFINE_string("train_images", None, "Image-list mode: training images with their (noisy) labels, "
                        "lines key<TAB>image path<TAB>class_name (instead of --train_tsv).")
    flags.DEFINE_string("test_images", None, "Image-list mode: test images with their TRUE labels, same format.")
    flags.DEFINE_string("image_root", None, "Relative image paths are joined to it and must stay inside it; "
                        "default: the directory of each list file.")
    flags.DEFINE_enum("backbone", "resnet50", list(BACKBONES),
                      "Image-list mode: the CNN (keras.applications with weights=None, or a small CNN).")
    flags.DEFINE_string("backbone_weights", None, "A Keras weights file for the backbone without its top "
                        "(e.g. ImageNet notop weights you have); default: random initialisation.")
    flags.DEFINE_integer("image_size", 224, "Images are resized to image_size x image_size pixels.")
    flags.DEFINE_bool("freeze_backbone", False, "Train only the head; the backbone runs in inference mode.")
    flags.DEFINE_bool("skip_bad_images", False, "Drop (and count) images that cannot be decoded instead of "
                      "stopping with an error naming the first.")


def main(argv):
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "train_tsv", "unexpected arguments %s" % argv[1:])
    check_flag(bool(FLAGS.train_tsv) != bool(FLAGS.train_images), "train_tsv",
               "give exactly one of --train_tsv (features) and --train_images (image list)")
    check_flag(bool(FLAGS.class_list), "class_list", "is required")
    common = dict(weights_file=FLAGS.weights_file, weighting=FLAGS.weighting, epochs=FLAGS.epochs,
                  batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                  hidden_units=FLAGS.hidden_units, train_dir=FLAGS.train_dir, seed=FLAGS.seed)
    if FLAGS.train_tsv:
        check_flag(not FLAGS.test_images, "test_images", "goes with --train_images, not --train_tsv")
        accuracy = train_classifier(FLAGS.train_tsv, FLAGS.class_list, test_tsv=FLAGS.test_tsv,
                                    img_dim=FLAGS.img_dim, train_layout=FLAGS.train_layout, **common)
        tested = bool(FLAGS.test_tsv)
    else:
        check_flag(not FLAGS.test_tsv, "test_tsv", "goes with --train_tsv, not --train_images")
        accuracy = train_image_classifier(FLAGS.train_images, FLAGS.class_list, test_images=FLAGS.test_images,
                                          image_root=FLAGS.image_root, backbone=FLAGS.backbone,
                                          backbone_weights=FLAGS.backbone_weights, image_size=FLAGS.image_size,
                                          freeze_backbone=FLAGS.freeze_backbone,
                                          skip_bad_images=FLAGS.skip_bad_images, **common)
        tested = bool(FLAGS.test_images)
    if tested:
        print("test accuracy = %.6f" % accuracy)


def run():
    """Console entry point (cleannet-train-classifier)."""
    define_flags()
    app.run(cli_main(main))


if __name__ == "__main__":
    run()
