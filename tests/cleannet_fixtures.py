"""Tiny CleanNet data directories for tests: train.npy, val.npy, all.npy and ref.npy in the
layouts of cleannet/datafiles.py (what util/convert_data.py and util/find_reference.py write)."""

import os

import numpy as np

from noisylabels.fileio import save_npy


def write_cleannet_data(directory, seed=0, img_dim=8, num_classes=3, num_ref=2, n_train=20, n_val=8, n_all=15,
                        scale=1.0):
    """Writes random CleanNet data into `directory` (created if missing) and returns its path (str).

    Args:
      directory: where the four files go.
      seed: of the NumPy generator that draws everything.
      img_dim, num_classes, num_ref: h, the classes and the references per class.
      n_train, n_val: rows of train.npy and val.npy ([n, h+2] float32: features uniform in
        [0, scale), a random class id, a random verification label 0/1).
      n_all: rows of all.npy ([n, h+1]: features, class id), sorted by class, the classes
        taking turns so that each class has about n_all / num_classes rows.
      scale: features (and references) are uniform in [0, scale).
    """
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)

    def verified(n):
        return np.column_stack([rng.random((n, img_dim)) * scale, rng.integers(0, num_classes, n),
                                rng.integers(0, 2, n)]).astype(np.float32)

    save_npy(os.path.join(directory, "train.npy"), verified(n_train))
    save_npy(os.path.join(directory, "val.npy"), verified(n_val))
    all_ids = np.sort(np.arange(n_all) % num_classes)
    save_npy(os.path.join(directory, "all.npy"),
             np.column_stack([rng.random((n_all, img_dim)) * scale, all_ids]).astype(np.float32))
    save_npy(os.path.join(directory, "ref.npy"),
             (rng.random((num_classes, num_ref, img_dim)) * scale).astype(np.float32))
    return str(directory)
