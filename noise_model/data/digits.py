"""A CIFAR-sized stand-in for CIFAR-10: scikit-learn's digits with the same noisy protocol.

scikit-learn's `load_digits()` (1797 grey images of 8×8 pixels, values 0..16, 10 classes)
ships with scikit-learn, so the whole CIFAR-10 pipeline (docs/originals.md#noisy-label-model-cifar-10-protocol) can run without a
download. Each image is scaled to 0..255 (uint8, rounded), resized to 32×32 with OpenCV's
bilinear interpolation (INTER_LINEAR) and replicated to 3 channels. A seeded permutation
puts `num_test` images in the test set and the rest in the training set; the first
`clean_fraction` of the training images (20%, the CIFAR share 10k / 50k) keep their true
labels. The rest of the protocol and the output layout are those of `cifar10.py`, with
`"dataset": "digits"` in metadata.json.
"""

from typing import Any, Optional

import cv2
import numpy as np
from numpy.typing import ArrayLike
from sklearn.datasets import load_digits

from noise_model.data import cifar10
from noisylabels.errors import InputError

IMAGE_SIZE = 32
DIGITS_MAX_VALUE = 16.0
DEFAULT_CLEAN_FRACTION = 0.2


def digits_to_images(digits_images: ArrayLike) -> np.ndarray:
    """float [n, 8, 8] in 0..16 → uint8 [n, 32, 32, 3] (scaled, bilinear resize, 3 channels)."""
    scaled = np.round(np.asarray(digits_images, np.float64) * (255.0 / DIGITS_MAX_VALUE))
    scaled = np.clip(scaled, 0, 255).astype(np.uint8)
    resized = np.stack([cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
                        for img in scaled])
    return np.repeat(resized[..., None], 3, axis=-1)


def load_digits_split(num_test: int = 360,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as 32×32 RGB, split by a permutation seeded with `seed`.

    Returns:
      (train_images uint8 [n - num_test, 32, 32, 3], train_labels int64,
       test_images uint8 [num_test, 32, 32, 3], test_labels int64).
    """
    digits = load_digits()
    images = digits_to_images(digits.images)
    labels = digits.target.astype(np.int64)
    if not 1 <= num_test < len(labels):
        raise InputError("must be in [1, %d), got %d" % (len(labels), num_test), field="--num_test")
    order = np.random.default_rng(seed).permutation(len(labels))
    test, train = order[:num_test], order[num_test:]
    return images[train], labels[train], images[test], labels[test]


def prepare_digits(output_dir: str, noise_level: float = 0.5,
                   clean_fraction: float = DEFAULT_CLEAN_FRACTION, num_test: int = 360,
                   seed: int = 0, num_clean: Optional[int] = None) -> dict[str, Any]:
    """Writes the prepared digits data set (the cifar10 layout) to `output_dir`.

    Args:
      output_dir: created if needed.
      noise_level: in [0, 1], the off-diagonal mass of each column of Q.
      clean_fraction: share of the training images that keep true labels (used when
        `num_clean` is None); rounded to a count.
      num_test: size of the test set.
      seed: ≥ 0; seeds the train/test split (seed), Q (seed), the corruption (seed + 1) and
        the mixed-set shuffle (seed + 2).
      num_clean: an explicit number of clean images instead of `clean_fraction`.

    Returns:
      the protocol dict of cifar10.build_noisy_protocol (splits, matrices, stats).
    """
    if num_clean is None:
        if not 0.0 < clean_fraction <= 1.0:
            raise InputError("must be in (0, 1], got %r" % clean_fraction, field="clean_fraction")
    train_images, train_labels, test_images, test_labels = load_digits_split(num_test, seed)
    if num_clean is None:
        num_clean = int(round(clean_fraction * len(train_labels)))
    protocol = cifar10.build_noisy_protocol(train_images, train_labels, test_images, test_labels,
                                            noise_level, num_clean, seed)
    cifar10.log_protocol(protocol)
    cifar10.write_prepared(output_dir, "digits", protocol, {
        "source": "sklearn.datasets.load_digits", "noise_level": noise_level, "seed": seed,
        "num_test": num_test})
    return protocol
