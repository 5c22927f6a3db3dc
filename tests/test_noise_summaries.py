"""TensorBoard views of noise_model/training/summaries.py: the statistics against NumPy written out
here, and a short --stage=all run on the digits whose event files hold every view."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from noise_model.training import settings as settings_lib
from noise_model.training import stage_runner
from noise_model.training import summaries


def test_confusion_matrix_counts_labelled_samples():
    targets = np.array([0, 0, 1, 2, 2, 2, -1, 1])
    predictions = np.array([0, 1, 1, 2, 0, 2, 1, 1])
    expected = np.zeros((3, 3), np.int64)
    for t, p in zip(targets, predictions):
        if t >= 0:
            expected[t, p] += 1
    # By hand: row 0 = (1, 1, 0), row 1 = (0, 2, 0), row 2 = (1, 0, 2).
    np.testing.assert_array_equal(expected, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    np.testing.assert_array_equal(summaries.confusion_matrix(targets, predictions, 3), expected)
    logits = np.eye(3)[predictions] * 5.0  # argmax of known logits
    np.testing.assert_array_equal(
        summaries.confusion_matrix(targets, logits.argmax(axis=1), 3), expected)


def test_noise_type_averages_overall_and_per_noisy_class():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(12, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    noisy = np.array([0, 1, 1, -1, 3, 0, 0, -1, 3, 1, 1, 0])
    overall, per_class = summaries.noise_type_averages(probs, noisy, num_classes=4)
    np.testing.assert_allclose(overall, probs.sum(axis=0) / 12, rtol=1e-12)
    assert sorted(per_class) == [0, 1, 3]  # class 2 has no sample
    for label in (0, 1, 3):
        rows = [probs[i] for i in range(12) if noisy[i] == label]
        mean, count = per_class[label]
        assert count == len(rows)
        np.testing.assert_allclose(mean, np.sum(rows, axis=0) / len(rows), rtol=1e-12)
    table = summaries.noise_type_table(overall, per_class)
    assert "| all | %.4f |" % overall[0] in table
    assert "noisy label 3 (2)" in table


def test_matrix_image_rows_normalised():
    image = summaries.matrix_image(np.array([[3, 1], [0, 0]]), normalise_rows=True)
    cell = summaries.CELL_PIXELS
    assert image.shape == (2 * cell, 2 * cell, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == round(0.75 * 255) and image[0, cell, 0] == round(0.25 * 255)
    assert image[cell, 0, 0] == 0  # an empty row stays black


def _events(train_dir):
    """{tag: [(step, ndarray)]} of train_dir's event files."""
    found = {}
    for path in glob.glob(os.path.join(train_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return found


def _table_counts(text):
    rows = [line for line in text.splitlines()[2:]]
    return np.array([[int(v) for v in row.strip("| ").split(" | ")[1:]] for row in rows])


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from noise_model.data import digits

    root = tmp_path_factory.mktemp("summaries")
    data_dir = str(root / "prepared")
    digits.prepare_digits(data_dir, seed=0)
    overrides = {name: None for name in settings_lib.SETTING_NAMES}
    overrides.update(max_iter=2, batch_size=16, test_batch_size=200, test_interval=100,
                     snapshot_interval=100, display=1)
    stage_runner.run_all("digits", data_dir, str(root / "run"), overrides, seed=0)
    return data_dir, str(root / "run")


def test_event_files_hold_every_view(digits_run):
    _, run_dir = digits_run
    clean = _events(os.path.join(run_dir, "clean"))
    ntype = _events(os.path.join(run_dir, "ntype"))
    joint = _events(os.path.join(run_dir, "joint"))
    for events in (clean, ntype, joint):
        assert {"test/confusion_matrix", "test/confusion_matrix_table"} <= set(events)
    for events in (ntype, joint):
        assert {"test/noise_type_posterior", "test/noise_type_posterior_table"} <= set(events)
    assert "test/noise_type_posterior" not in clean
    assert {"matrix_c", "matrix_c_table"} <= set(joint) and "matrix_c" not in clean
    assert [step for step, _ in joint["matrix_c"]] == [0]  # once, at the start

    # The clean net's confusion matrix: 10×10 over the 360 test images, tested at
    # iterations 0 and 2; its diagonal share is the test accuracy written beside it.
    for events, classes in ((clean, 10), (joint, 10), (ntype, 3)):
        accuracy = dict((step, float(v)) for step, v in events["test/accuracy"])
        for step, text in events["test/confusion_matrix_table"]:
            counts = _table_counts(text.item().decode())
            assert counts.shape == (classes, classes)
            np.testing.assert_allclose(np.trace(counts) / counts.sum(), accuracy[step], rtol=1e-6)
        assert sorted(step for step, _ in events["test/confusion_matrix"]) == [0, 2]
        width, height, png = events["test/confusion_matrix"][0][1]
        image = tf.io.decode_png(png).numpy()
        assert image.shape == (classes * summaries.CELL_PIXELS, classes * summaries.CELL_PIXELS, 3)
        assert (int(width), int(height)) == (image.shape[1], image.shape[0])
    assert _table_counts(clean["test/confusion_matrix_table"][0][1].item().decode()).sum() == 360

    # The mean p(z|x): a distribution over the 3 noise types.
    text = ntype["test/noise_type_posterior_table"][-1][1].item().decode()
    overall = [float(v) for v in text.splitlines()[2].strip("| ").split(" | ")[1:]]
    assert len(overall) == 3 and abs(sum(overall) - 1.0) < 2e-4
