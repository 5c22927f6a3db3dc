"""TensorBoard views of the noisy-label model, written by train.py at each test.

- `{prefix}/confusion_matrix`: the tested net's confusion matrix on a test split (rows =
  true class, columns = predicted class): an image (each row normalised to sum 1, white =
  1, black = 0, one pixel block per cell) and a text table of counts. For the clean-label
  stages (and joint, through its clean net) the classes are the L clean labels; for stage
  ntype, the 3 noise types.
- `{prefix}/noise_type_posterior`: for stages with a noise-type net, the mean of the
  learned p(z|x) over the test split, z = 0 noise-free, 1 random, 2 confusing: overall
  and per noisy label ỹ (over the samples that have one). A text table and an image
  (rows: "all", then one per noisy class present).
- `matrix_c`: C (L×L, rows noisy label ỹ, columns clean label y, scaled by its largest
  entry), once at the start of a joint stage, as an image and a text table.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

NOISE_TYPE_NAMES = ("noise-free", "random", "confusing")
CELL_PIXELS = 16  # each matrix cell is drawn as a CELL_PIXELS × CELL_PIXELS block



# ---------------------------------------------------------------------------------------
# The statistics (NumPy).


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) over the samples with a label.

    Args:
      targets: int [n], the true class, −1 = no label (skipped).
      predictions: int [n], the predicted class (argmax of the logits).
      num_classes: K.

    Returns:
      int64 [K, K]: entry [i, j] = number of labelled samples of true class i predicted j.
    """
    targets = np.asarray(targets, np.int64).reshape(-1)
    predictions = np.asarray(predictions, np.int64).reshape(-1)
    keep = targets >= 0
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (targets[keep], predictions[keep]), 1)
    return matrix


def noise_type_averages(ntype_probs: np.ndarray, noisy_labels: np.ndarray,
                        num_classes: int) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, int]]]:
    """Mean p(z|x) overall and per noisy label.

    Args:
      ntype_probs: float [n, 3], p(z|x) of the noise-type net (softmax of its logits).
      noisy_labels: int [n], the noisy label ỹ, −1 = none.
      num_classes: L.

    Returns:
      (overall float64 [3] (zeros when n = 0), per_class dict ỹ → (float64 [3], count) for
      each noisy class with at least one sample).
    """
    probs = np.asarray(ntype_probs, np.float64).reshape(-1, 3)
    noisy = np.asarray(noisy_labels, np.int64).reshape(-1)
    overall = probs.mean(axis=0) if len(probs) else np.zeros(3)
    per_class = {}
    for label in range(num_classes):
        rows = probs[noisy == label]
        if len(rows):
            per_class[label] = (rows.mean(axis=0), len(rows))
    return overall, per_class


# ---------------------------------------------------------------------------------------
# Rendering.


def matrix_image(matrix: np.ndarray, normalise_rows: bool = False) -> np.ndarray:
    """A matrix as a grey-level image: uint8 [rows·CELL_PIXELS, cols·CELL_PIXELS, 3].

    Values are divided by each row's sum (normalise_rows) or by the largest entry, so 255 =
    the largest share; an all-zero row stays black.
    """
    values = np.asarray(matrix, np.float64)
    if normalise_rows:
        sums = values.sum(axis=1, keepdims=True)
        values = np.divide(values, sums, out=np.zeros_like(values), where=sums > 0)
    else:
        top = values.max() if values.size else 0.0
        values = values / top if top > 0 else np.zeros_like(values)
    grey = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    grey = np.repeat(np.repeat(grey, CELL_PIXELS, axis=0), CELL_PIXELS, axis=1)
    return np.stack([grey] * 3, axis=-1)


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (TensorBoard's text plugin renders it): header list, rows of lists."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def confusion_table(matrix: np.ndarray) -> str:
    """Markdown table of counts: rows "true i", columns "pred j"."""
    k = len(matrix)
    return markdown_table(["true \\ pred"] + [str(j) for j in range(k)],
                          [["%d" % i] + ["%d" % v for v in matrix[i]] for i in range(k)])


def noise_type_table(overall: np.ndarray, per_class: dict[int, tuple[np.ndarray, int]]) -> str:
    """Markdown table: one row "all" and one per noisy class; columns mean p(z|x), count."""
    header = ["samples"] + ["p(z=%d|x) %s" % (z, name) for z, name in enumerate(NOISE_TYPE_NAMES)]
    rows = [["all"] + ["%.4f" % v for v in overall]]
    for label, (mean, count) in sorted(per_class.items()):
        rows.append(["noisy label %d (%d)" % (label, count)] + ["%.4f" % v for v in mean])
    return markdown_table(header, rows)


# ---------------------------------------------------------------------------------------
# Writing (to the default summary writer).


def write_image(tag: str, image: np.ndarray, step: int) -> None:
    """Writes one uint8 [H, W, 3] image as TensorBoard's image summary."""
    tf.summary.image(tag, np.asarray(image, np.uint8)[None], step=step)


def write_text(tag: str, text: str, step: int) -> None:
    """Writes one text (Markdown) summary."""
    tf.summary.text(tag, text, step=step)


def write_confusion(prefix: str, targets: np.ndarray, predictions: np.ndarray, num_classes: int,
                    step: int) -> np.ndarray:
    """Writes `{prefix}/confusion_matrix` (image and text); returns the matrix."""
    matrix = confusion_matrix(targets, predictions, num_classes)
    write_image("%s/confusion_matrix" % prefix, matrix_image(matrix, normalise_rows=True), step)
    write_text("%s/confusion_matrix_table" % prefix, confusion_table(matrix), step)
    return matrix


def write_noise_type_posterior(prefix: str, ntype_probs: np.ndarray, noisy_labels: np.ndarray, num_classes: int,
                               step: int) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, int]]]:
    """Writes `{prefix}/noise_type_posterior` (text and image); returns (overall, per_class)."""
    overall, per_class = noise_type_averages(ntype_probs, noisy_labels, num_classes)
    write_text("%s/noise_type_posterior_table" % prefix, noise_type_table(overall, per_class), step)
    rows = [overall] + [mean for _, (mean, _) in sorted(per_class.items())]
    image = matrix_image(np.stack(rows))  # entries are probabilities: scaled by the largest
    write_image("%s/noise_type_posterior" % prefix, image, step)
    return overall, per_class


def write_matrix_c(matrix_c: np.ndarray, step: int) -> None:
    """Writes C once (image `matrix_c`, text `matrix_c_table`, 4 decimals)."""
    matrix_c = np.asarray(matrix_c, np.float64)
    write_image("matrix_c", matrix_image(matrix_c), step)
    k = len(matrix_c)
    table = markdown_table(["noisy \\ clean"] + [str(j) for j in range(k)],
                           [["%d" % i] + ["%.4f" % v for v in matrix_c[i]] for i in range(k)])
    write_text("matrix_c_table", table, step)
