"""Tests for cleannet/classifier/ and its tool (train_classifier.py): CleanNet's sample weights help; bad joins fail."""

import os
import subprocess
import sys

import numpy as np
import pytest

from process_control import run_flag_error_without_tensorflow

from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES, DIM = 4, 6
NAMES = ["c%d" % i for i in range(NUM_CLASSES)]


def write_tsv(path, keys, labels, features):
    with open(path, "w") as f:
        for key, label, row in zip(keys, labels, features):
            f.write("%s\t%s\t%s\n" % (key, NAMES[label], ",".join("%.6g" % v for v in row)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Gaussian classes; 45% of each class's training labels moved to the next class.

    Weights: soft and hard weight 0 exactly for the wrong labels, 1 for the right ones.
    """
    root = tmp_path_factory.mktemp("clf")
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1.0, (NUM_CLASSES, DIM))

    def sample(n):
        truth = rng.integers(0, NUM_CLASSES, n)
        return truth, (centres[truth] + rng.normal(0, 0.8, (n, DIM))).astype(np.float32)

    truth, features = sample(1200)
    wrong = rng.random(len(truth)) < 0.45
    noisy = np.where(wrong, (truth + 1) % NUM_CLASSES, truth)
    keys = ["k%04d" % i for i in range(len(truth))]
    write_tsv(root / "train.tsv", keys, noisy, features)
    test_truth, test_features = sample(600)
    write_tsv(root / "test.tsv", ["t%d" % i for i in range(600)], test_truth, test_features)
    (root / "classes.txt").write_text("".join(n + "\n" for n in NAMES))
    with open(root / "weights.tsv", "w") as f:
        f.write("key\tclass_name\tsoft_weight\thard_weight\n")
        for key, label, bad in zip(keys, noisy, wrong):
            f.write("%s\t%s\t%s\t%d\n" % (key, NAMES[label], "0" if bad else "0.9", int(not bad)))
    return root


def run_classifier(data, weighting, **kwargs):
    from cleannet.classifier.training import train_classifier

    args = dict(test_tsv=str(data / "test.tsv"), weights_file=str(data / "weights.tsv"), weighting=weighting,
                epochs=8, batch_size=64, learning_rate=0.01, seed=3)
    args.update(kwargs)
    return train_classifier(str(data / "train.tsv"), str(data / "classes.txt"), **args)


def test_hard_weights_beat_no_weights(data):
    none = run_classifier(data, "none")
    hard = run_classifier(data, "hard")
    soft = run_classifier(data, "soft")
    # With 45% of labels moved to the next class the unweighted classifier confuses
    # neighbouring classes; dropping exactly the wrong labels recovers the clean classifier.
    assert hard > none + 0.1, (none, hard)
    assert soft > none + 0.1, (none, soft)


def test_loss_is_weighted_cross_entropy_over_batch_size(data):
    """Keras' loss on one batch of every sample equals NumPy's Σ w_i·CE_i / N at the same weights."""
    import keras

    from cleannet.classifier.data import load_samples
    from cleannet.classifier.weights import sample_weights

    keys, features, labels = load_samples(str(data / "train.tsv"), NAMES)
    weights = sample_weights(keys, labels, NAMES, "soft", str(data / "weights.tsv"))
    seen = {}

    class Capture(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen["logits"] = np.asarray(self.model(features), np.float64)  # before the update

        def on_train_batch_end(self, batch, logs=None):
            seen["loss"] = float(logs["loss"])

    run_classifier(data, "soft", epochs=1, batch_size=len(labels), callbacks=[Capture()])
    logits = seen["logits"]
    log_softmax = logits - logits.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    cross_entropy = -log_softmax[np.arange(len(labels)), labels]
    assert 0 < np.count_nonzero(weights) < len(weights)  # weights that matter
    np.testing.assert_allclose(seen["loss"], np.sum(weights * cross_entropy) / len(labels), rtol=1e-5)


def test_non_finite_loss_stops_before_saving():
    from cleannet.classifier.training import check_loss_is_finite
    from noisylabels.errors import TrainingError

    check_loss_is_finite(0, {"loss": 0.5})
    with pytest.raises(TrainingError, match="batch 3"):
        check_loss_is_finite(3, {"loss": float("nan")})
    with pytest.raises(TrainingError, match="batch 4"):
        check_loss_is_finite(4, {"loss": float("-inf")})


def test_missing_key_names_it(data, tmp_path):
    lines = (data / "weights.tsv").read_text().splitlines(True)
    short = tmp_path / "weights.tsv"
    short.write_text("".join(line for line in lines if not line.startswith("k0007\t")))
    with pytest.raises(InputError, match="k0007"):
        run_classifier(data, "hard", weights_file=str(short))


def test_class_mismatch_and_bad_header(data, tmp_path):
    lines = (data / "weights.tsv").read_text().splitlines(True)
    key, name = lines[1].split("\t")[:2]
    other = NAMES[(NAMES.index(name) + 1) % NUM_CLASSES]
    changed = tmp_path / "changed.tsv"
    changed.write_text("".join([lines[0], lines[1].replace(name, other)] + lines[2:]))
    with pytest.raises(InputError, match=key):
        run_classifier(data, "soft", weights_file=str(changed))
    headless = tmp_path / "headless.tsv"
    headless.write_text("".join(lines[1:]))
    with pytest.raises(InputError, match="header"):
        run_classifier(data, "soft", weights_file=str(headless))


def classifier_cli(data, *flags):
    return [sys.executable, os.path.join(ROOT, "train_classifier.py"), "--train_tsv=%s" % (data / "train.tsv"),
            "--class_list=%s" % (data / "classes.txt")] + list(flags)


def test_cli_missing_key_is_one_line_exit_2(data, tmp_path):
    bad = tmp_path / "w.tsv"
    bad.write_text("key\tclass_name\tsoft_weight\thard_weight\n")
    result = subprocess.run(classifier_cli(data, "--weights_file=%s" % bad, "--weighting=hard", "--epochs=1"),
                            capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 2
    assert "k0000" in result.stderr.strip().splitlines()[-1]


CLI_FLAG_ERRORS = [
    # id, flags ("{tmp}": tmp_path), parts of the one error line
    ("epochs_0", ["--epochs=0"], ["flag --epochs=0:", "not a positive integer"]),
    ("batch_size_0", ["--batch_size=0"], ["flag --batch_size=0:", "not a positive integer"]),
    ("learning_rate_0", ["--learning_rate=0"], ["flag --learning_rate=0.0:", "greater than 0"]),
    ("learning_rate_nan", ["--learning_rate=nan"], ["flag --learning_rate=nan:", "must be a finite number"]),
    ("hidden_units_negative", ["--hidden_units=-1"], ["flag --hidden_units=-1:", "not a non-negative integer"]),
    ("img_dim_0", ["--img_dim=0"], ["flag --img_dim=0:", "not a positive integer"]),
    ("image_size_31", ["--image_size=31"], ["flag --image_size=31:", "not integer >= 32"]),
    ("unknown_backbone", ["--backbone=vgg"], ["flag --backbone=vgg:", "one of <resnet50|mobilenet_v2|small_cnn>"]),
    ("unknown_weighting", ["--weighting=all"], ["flag --weighting=all:", "one of <none|soft|hard>"]),
    ("no_class_list", ["--class_list"], ["flag --class_list=None:", "must have a value other than None"]),
    ("no_training_data", ["--train_tsv"], ["train_tsv=None, train_images=None:", "exactly one of --train_tsv"]),
    ("both_training_data", ["--train_images={tmp}/x.txt"], ["exactly one of --train_tsv"]),
    ("test_images_with_tsv", ["--test_images={tmp}/x.txt"], ["--test_images goes with --train_images"]),
    ("test_tsv_with_images", ["--train_tsv", "--train_images={tmp}/x.txt", "--test_tsv={tmp}/t.tsv"],
     ["--test_tsv goes with --train_tsv"]),
    ("weighting_without_file", ["--weighting=soft"], ["weighting=soft, weights_file=None:", "needs --weights_file"]),
    ("missing_weights_file", ["--weighting=hard", "--weights_file={tmp}/none.tsv"],
     ["{tmp}/none.tsv: --weights_file: file not found"]),
    ("missing_train_tsv", ["--train_tsv={tmp}/none.tsv"], ["{tmp}/none.tsv: --train_tsv: file not found"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in CLI_FLAG_ERRORS],
                         ids=[case[0] for case in CLI_FLAG_ERRORS])
def test_cli_flag_and_file_errors_come_before_tensorflow(tmp_path, args, expected):
    """A bad flag, a bad pair of flags or a missing input is one stderr line naming it, exit status
    2, and TensorFlow and Keras are never imported (python's import-time report lists every
    module imported). A bare flag in `args` leaves that flag out."""
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "train.tsv").write_text("")
    defaults = {"--train_tsv": "--train_tsv=%s" % (tmp_path / "train.tsv"),
                "--class_list": "--class_list=%s" % (tmp_path / "classes.txt")}
    error = run_flag_error_without_tensorflow("train_classifier.py", defaults, args, tmp_path)
    assert all(part.format(tmp=tmp_path) in error for part in expected), error
    assert sorted(os.listdir(tmp_path)) == ["classes.txt", "train.tsv"]


@pytest.mark.slow
def test_cli_writes_checkpoints_and_tensorboard(data, tmp_path):
    train_dir = tmp_path / "run"
    args = classifier_cli(data, "--test_tsv=%s" % (data / "test.tsv"), "--weights_file=%s" % (data / "weights.tsv"),
                          "--weighting=hard", "--epochs=2", "--hidden_units=8", "--train_dir=%s" % train_dir)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.strip().split("=")[-1])
    assert 0.0 <= accuracy <= 1.0
    # The model after the last epoch is kept in train_dir/checkpoints; it gives the printed accuracy.
    from cleannet.classifier.data import load_samples
    from cleannet.classifier.model import build_classifier

    _, train_features, _ = load_samples(str(data / "train.tsv"), NAMES)
    _, test_features, test_labels = load_samples(str(data / "test.tsv"), NAMES)
    model = build_classifier(DIM, NUM_CLASSES, 8, train_features)
    model.load_weights(str(train_dir / "checkpoints" / "latest.weights.h5"))
    predicted = np.argmax(model.predict(test_features, verbose=0), axis=1)
    assert abs(np.mean(predicted == test_labels) - accuracy) < 1e-6
    assert epochs_done(train_dir) == 2
    tags = tensorboard_tags(train_dir / "log")
    assert {"epoch_loss", "epoch_accuracy"} <= tags["train"] and "epoch_accuracy" in tags["validation"], tags


def test_load_samples_from_npy(tmp_path):
    from cleannet.classifier.data import load_samples

    table = np.array([[0.5, 1.5, 2, 1], [3.0, 4.0, 0, 0], [6.0, 7.0, 3, -1]], np.float32)  # verified layout, h=2
    np.save(tmp_path / "train.npy", table)
    keys, features, labels = load_samples(str(tmp_path / "train.npy"), NAMES, img_dim=2)
    assert keys == ["0", "1", "2"]
    np.testing.assert_array_equal(features, table[:, :2])
    np.testing.assert_array_equal(labels, [2, 0, 3])
    with pytest.raises(InputError, match="columns"):
        load_samples(str(tmp_path / "train.npy"), NAMES, img_dim=5)
    np.save(tmp_path / "bad.npy", np.array([[0.5, 9.0]], np.float32))
    with pytest.raises(InputError, match="class ids"):
        load_samples(str(tmp_path / "bad.npy"), NAMES, img_dim=1)


def epochs_done(train_dir):
    """Epochs finished according to the resume state in train_dir/checkpoints (Keras BackupAndRestore)."""
    import json

    with open(os.path.join(train_dir, "checkpoints", "training_metadata.json")) as f:
        return json.load(f)["epoch"]


def tensorboard_tags(log_dir):
    """{run: the set of tags} of the TensorBoard event files in log_dir/train and log_dir/validation."""
    import tensorflow as tf

    tags = {}
    for run in ("train", "validation"):
        tags[run] = set()
        for name in os.listdir(log_dir / run):
            for event in tf.compat.v1.train.summary_iterator(str(log_dir / run / name)):
                tags[run].update(v.tag for v in event.summary.value)
    return tags


def saved_state(train_dir):
    """Every array (model and optimizer) of the resume state in train_dir/checkpoints, in file order."""
    import h5py

    arrays = []
    with h5py.File(os.path.join(train_dir, "checkpoints", "latest.weights.h5"), "r") as f:
        f.visititems(lambda name, item: arrays.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_state(a, b):
    assert [name for name, _ in a] == [name for name, _ in b]
    for (name, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_resume_from_checkpoint(data, tmp_path):
    # A finished run started again with more epochs continues where it stopped, and ends
    # exactly where one run of all the epochs ends (weights, optimizer state, accuracy).
    first = run_classifier(data, "hard", epochs=2, train_dir=str(tmp_path / "a"))
    assert epochs_done(tmp_path / "a") == 2
    again = run_classifier(data, "hard", epochs=2, train_dir=str(tmp_path / "a"))  # nothing left to do
    assert again == first and epochs_done(tmp_path / "a") == 2
    resumed = run_classifier(data, "hard", epochs=3, train_dir=str(tmp_path / "a"))
    assert epochs_done(tmp_path / "a") == 3
    straight = run_classifier(data, "hard", epochs=3, train_dir=str(tmp_path / "b"))
    assert resumed == straight
    assert_same_state(saved_state(tmp_path / "a"), saved_state(tmp_path / "b"))
    tags = tensorboard_tags(tmp_path / "a" / "log")
    assert {"epoch_loss", "epoch_accuracy"} <= tags["train"] and "epoch_accuracy" in tags["validation"], tags
    with pytest.raises(InputError, match=r"other data or settings \(--hidden_units 0 -> 5\)"):
        run_classifier(data, "hard", epochs=4, hidden_units=5, train_dir=str(tmp_path / "a"))
    with pytest.raises(InputError, match=r"other data or settings \(--weighting hard -> soft\)"):
        run_classifier(data, "soft", epochs=4, train_dir=str(tmp_path / "a"))
    assert epochs_done(tmp_path / "a") == 3  # nothing was trained by the refused runs


def test_a_second_run_on_the_same_train_dir_is_refused(data, tmp_path):
    from noisylabels.run_record import DirectoryLock

    with DirectoryLock(str(tmp_path / "a")):
        with pytest.raises(InputError, match=r"in use by another run \(pid %d" % os.getpid()):
            run_classifier(data, "hard", epochs=1, train_dir=str(tmp_path / "a"))
    assert not (tmp_path / "a" / "checkpoints").exists()


class Interrupt(Exception):
    pass


def test_interrupted_fit_resumes_to_the_same_result(data, tmp_path):
    """A run stopped after its 2nd epoch and started again ends as the uninterrupted run, bit for bit."""
    import keras

    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Interrupt()

    settings = dict(epochs=4, hidden_units=8, batch_size=100, train_dir=str(tmp_path / "interrupted"))
    with pytest.raises(Interrupt):
        run_classifier(data, "soft", callbacks=[StopAfterSecondEpoch()], **settings)
    assert epochs_done(tmp_path / "interrupted") == 2
    resumed = run_classifier(data, "soft", **settings)
    straight = run_classifier(data, "soft", **dict(settings, train_dir=str(tmp_path / "straight")))
    assert resumed == straight
    assert_same_state(saved_state(tmp_path / "interrupted"), saved_state(tmp_path / "straight"))
    # Not a vacuous comparison: the state after 4 epochs differs from the one after 2.
    run_classifier(data, "soft", **dict(settings, epochs=2, train_dir=str(tmp_path / "two")))
    assert any(not np.array_equal(x, y) for (_, x), (_, y) in zip(saved_state(tmp_path / "two"),
                                                                 saved_state(tmp_path / "straight")))


@pytest.mark.parametrize("batches_per_epoch", [1, 2])
def test_each_epoch_trains_on_its_own_data_also_after_a_restart(tmp_path, batches_per_epoch):
    """fit_weighted feeds epoch e's batches to epoch e, from the first epoch and after a resume."""
    import keras
    import tensorflow as tf

    from cleannet.classifier.training import fit_weighted

    seen = tf.Variable(-1.0)

    class Spy(keras.layers.Layer):  # records the batch the training step really used
        def call(self, x):
            seen.assign(x[0, 0])
            return x

    def epoch_dataset(epoch):  # every feature of epoch e is e
        features = tf.fill([4, 1], tf.cast(epoch, tf.float32))
        return tf.data.Dataset.from_tensor_slices((features, tf.zeros([4], tf.int64), tf.ones([4]))).batch(
            4 // batches_per_epoch)

    epochs_seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            epochs_seen.append((self.epoch, float(seen.numpy())))
            if self.epoch == 1 and batch == batches_per_epoch - 1 and stop:
                self.model.stop_training = True

    def run():
        model = keras.Sequential([keras.Input((1,)), Spy(), keras.layers.Dense(2)])
        fit_weighted(model, epoch_dataset, batches_per_epoch, None, 4, 0.01, str(tmp_path), [Record()])

    stop = True
    run()  # stops after epoch 1 (0-based)
    stop = False
    run()  # resumes at epoch 2
    expected = [(e, float(e)) for e in range(4) for _ in range(batches_per_epoch)]
    assert epochs_seen == expected, epochs_seen


# ---------------------------------------------------------------------------------------
# Image-list mode.

IMAGE_CLASSES = ["red", "green", "blue"]
IMAGE_COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.float64)  # RGB


def write_images(root, prefix, truth, rng):
    """Writes one 32×32 noisy solid-colour image per entry of `truth` (even: PNG, odd: JPEG)."""
    import cv2

    paths = []
    for i, label in enumerate(truth):
        rgb = IMAGE_COLOURS[label] * rng.uniform(0.7, 1.2) + rng.normal(0, 25, (32, 32, 3))
        name = "%s/%s_%03d.%s" % (IMAGE_CLASSES[label], prefix, i, "png" if i % 2 == 0 else "jpg")
        os.makedirs(root / IMAGE_CLASSES[label], exist_ok=True)
        assert cv2.imwrite(str(root / name), np.clip(rgb, 0, 255).astype(np.uint8)[:, :, ::-1])
        paths.append(name)
    return paths


def write_list(path, keys, paths, labels):
    with open(path, "w") as f:
        for key, image, label in zip(keys, paths, labels):
            f.write("%s\t%s\t%s\n" % (key, image, IMAGE_CLASSES[label]))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """3 colour classes, 30 training and 10 test images each.

    Training labels: 60% of the red images are labelled green (a majority: without weights a
    classifier learns red → green), 20% of the green ones blue and 20% of the blue ones red.
    The hard weight is 0 exactly on the wrong labels.
    """
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 30)
    wrong = np.zeros(len(truth), bool)
    for label, share in ((0, 0.6), (1, 0.2), (2, 0.2)):
        members = np.flatnonzero(truth == label)
        wrong[rng.choice(members, int(round(share * len(members))), replace=False)] = True
    noisy = np.where(wrong, (truth + 1) % 3, truth)
    keys = ["img%03d" % i for i in range(len(truth))]
    write_list(root / "train.txt", keys, write_images(root / "img", "train", truth, rng), noisy)
    test_truth = np.repeat(np.arange(3), 10)
    write_list(root / "test.txt", ["t%02d" % i for i in range(len(test_truth))],
               write_images(root / "img", "test", test_truth, rng), test_truth)
    (root / "classes.txt").write_text("".join(n + "\n" for n in IMAGE_CLASSES))
    with open(root / "weights.tsv", "w") as f:
        f.write("key\tclass_name\tsoft_weight\thard_weight\n")
        for key, label, bad in zip(keys, noisy, wrong):
            f.write("%s\t%s\t%s\t%d\n" % (key, IMAGE_CLASSES[label], "0" if bad else "0.8", int(not bad)))
    return root


def run_image_classifier(images, weighting, **kwargs):
    from cleannet.classifier.training import train_image_classifier

    args = dict(test_images=str(images / "test.txt"), image_root=str(images / "img"),
                weights_file=str(images / "weights.tsv"), weighting=weighting, backbone="small_cnn",
                image_size=32, epochs=12, batch_size=16, learning_rate=0.01, seed=0)
    args.update(kwargs)
    return train_image_classifier(str(images / "train.txt"), str(images / "classes.txt"), **args)


def test_images_hard_weights_beat_no_weights(images):
    none = run_image_classifier(images, "none")
    hard = run_image_classifier(images, "hard")
    # Unweighted, the red test images (a third) go to green; hard weights drop exactly the
    # wrong labels, leaving a clean, easily separable training set.
    assert none < 0.8, none
    assert hard > none + 0.2, (none, hard)


def test_image_list_errors_name_file_and_line(images, tmp_path):
    from cleannet.image_input import read_image_list

    lines = (images / "train.txt").read_text().splitlines(True)
    escaping = tmp_path / "escape.txt"
    escaping.write_text(lines[0] + "x1\t../../outside.png\tred\n")
    with pytest.raises(InputError, match=r"escape\.txt:2: .*leaves the image root"):
        read_image_list(str(escaping), IMAGE_CLASSES, image_root=str(images / "img"))
    missing = tmp_path / "missing.txt"
    missing.write_text(lines[0] + lines[1] + "x2\tred/nowhere.png\tred\n")
    with pytest.raises(InputError, match=r"missing\.txt:3: .*nowhere\.png"):
        read_image_list(str(missing), IMAGE_CLASSES, image_root=str(images / "img"))
    # Relative paths default to the list's directory; absolute paths are taken as they are.
    key, image, name = lines[0].rstrip("\n").split("\t")
    local = images / "img" / "local.txt"
    local.write_text("a\t%s\t%s\nb\t%s\t%s\n" % (image, name, images / "img" / image, name))
    read = read_image_list(str(local), IMAGE_CLASSES)
    assert read.paths == [str(images / "img" / image)] * 2
    assert read.keys == ["a", "b"] and list(read.labels) == [IMAGE_CLASSES.index(name)] * 2


def test_unreadable_image_named_or_skipped(images, tmp_path):
    lines = (images / "train.txt").read_text().splitlines(True)
    # An undecodable image: named with its list line; --skip_bad_images drops and counts it.
    (images / "img" / "red" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "broken.txt").write_text("".join(lines[:3]) + "x3\tred/broken.png\tred\n")
    from cleannet.image_input import check_readable, read_image_list

    listed = read_image_list(str(tmp_path / "broken.txt"), IMAGE_CLASSES, image_root=str(images / "img"))
    with pytest.raises(InputError, match=r"broken\.txt:4: .*broken\.png"):
        check_readable(listed)
    kept, skipped = check_readable(listed, skip_bad_images=True)
    assert skipped == 1 and kept.keys == listed.keys[:3] and kept.line_numbers == [1, 2, 3]


@pytest.mark.slow
def test_cli_image_errors(images, tmp_path):
    lines = (images / "train.txt").read_text().splitlines(True)
    (tmp_path / "escape.txt").write_text("".join(lines[:3]) + "\n" + "x2\tred/../../x.png\tred\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    args = [sys.executable, os.path.join(ROOT, "train_classifier.py"), "--class_list=%s" % (images / "classes.txt"),
            "--image_root=%s" % (images / "img"), "--backbone=small_cnn", "--image_size=32", "--epochs=1"]
    result = subprocess.run(args + ["--train_images=%s" % (tmp_path / "escape.txt")], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "escape.txt:5:" in last and "leaves the image root" in last, last
    (images / "img" / "red" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "broken.txt").write_text("".join(lines[:3]) + "x3\tred/broken.png\tred\n")
    result = subprocess.run(args + ["--train_images=%s" % (tmp_path / "broken.txt"), "--skip_bad_images",
                                    "--test_images=%s" % (images / "test.txt"), "--train_dir=%s" % (tmp_path / "run")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable images" in result.stderr
    assert 0.0 <= float(result.stdout.strip().split("=")[-1]) <= 1.0
    assert epochs_done(tmp_path / "run") == 1
    assert os.listdir(tmp_path / "run" / "log" / "train") and os.listdir(tmp_path / "run" / "log" / "validation")


def test_image_pipeline_values(images):
    """Decoded, resized and preprocessed as computed independently with cv2 and NumPy."""
    import cv2

    from cleannet.image_input import make_image_dataset, read_image_list

    read = read_image_list(str(images / "test.txt"), IMAGE_CLASSES, image_root=str(images / "img"))
    png = read.paths[0]
    expected = cv2.imread(png)[:, :, ::-1].astype(np.float32)  # RGB, already 32×32
    data = make_image_dataset([png, png], [2, 1], [1.0, 0.5], 32, "small_cnn", batch_size=2, training=False)
    x, y, w = next(iter(data))
    np.testing.assert_allclose(x.numpy()[0], expected / 255.0, atol=1e-5)
    np.testing.assert_array_equal(y.numpy(), [2, 1])
    np.testing.assert_allclose(w.numpy(), [1.0, 0.5])
    x, _, _ = next(iter(make_image_dataset([png], [0], [1.0], 32, "resnet50", 1, training=False)))
    bgr_minus_mean = expected[:, :, ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(x.numpy()[0], bgr_minus_mean, atol=1e-3)
    # Training: every image once per epoch, each either as is or mirrored left-right.
    paths = read.paths[0::2][:8]  # PNGs (JPEG decoders differ slightly)
    originals = [cv2.imread(p)[:, :, ::-1].astype(np.float32) / 255.0 for p in paths]
    x, y, _ = next(iter(make_image_dataset(paths, np.arange(8), np.ones(8), 32, "small_cnn", 8, True, seed=5)))
    assert sorted(y.numpy().tolist()) == list(range(8))
    for image, label in zip(x.numpy(), y.numpy()):
        original = originals[label]
        assert (np.allclose(image, original, atol=1e-5) or np.allclose(image, original[:, ::-1], atol=1e-5))


def test_backbones_build_without_download(tmp_path):
    import keras

    from cleannet import image_input
    from cleannet.choices import IMAGE_BACKBONES
    from cleannet.classifier.model import build_image_classifier

    assert IMAGE_BACKBONES == image_input.BACKBONES
    model = build_image_classifier("mobilenet_v2", 3, 32, hidden_units=4, freeze_backbone=True)
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 3)
    assert [v.name for v in model.trainable_variables] == ["kernel", "bias", "kernel", "bias"]
    # --backbone_weights: a saved small_cnn backbone comes back exactly.
    keras.utils.set_random_seed(1)
    source = build_image_classifier("small_cnn", 3, 32).get_layer("small_cnn")
    source.save_weights(str(tmp_path / "backbone.weights.h5"))
    keras.utils.set_random_seed(2)
    loaded = build_image_classifier("small_cnn", 3, 32, backbone_weights=str(tmp_path / "backbone.weights.h5"))
    for a, b in zip(source.get_weights(), loaded.get_layer("small_cnn").get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="backbone_weights"):
        build_image_classifier("small_cnn", 3, 32, backbone_weights=str(tmp_path / "none.weights.h5"))
    (tmp_path / "junk.weights.h5").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk"):
        build_image_classifier("small_cnn", 3, 32, backbone_weights=str(tmp_path / "junk.weights.h5"))
