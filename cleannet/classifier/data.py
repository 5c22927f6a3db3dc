"""The classifier's training and test samples: labelled features (TSV or .npy) and image lists."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import logging

from cleannet import tsv_reader
from noisylabels import fileio
from noisylabels.errors import InputError

LAYOUTS = ("all", "verified")


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


def read_images(train_images, test_images, class_names, image_root, skip_bad_images):
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
