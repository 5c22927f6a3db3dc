"""Tiny on-disk datasets in the original CIFAR-10 and Clothing1M layouts, for tests.

Every writer makes its data from a seeded NumPy generator and returns what it wrote, so
a test can compare a loader's output with the arrays that went into the files:

- `write_cifar10_python(directory, ...)`: `data_batch_1..5` and `test_batch` pickles as
  in `cifar-10-python.tar.gz` (dicts with `data` uint8 [n, 3072] in C×H×W order and
  `labels`, a list of ints).
- `write_cifar10_binary(directory, ...)`: `data_batch_1..5.bin` and `test_batch.bin` as in
  `cifar-10-binary.tar.gz` (records of 1 label byte + 3072 pixel bytes, C×H×W).
- `write_clothing1m(directory, ...)`: small JPEGs under `images/` plus the six Clothing1M
  list files.
"""

import os
import pickle

import cv2
import numpy as np

CIFAR_TRAIN_FILES = ["data_batch_%d" % i for i in range(1, 6)]
CIFAR_TEST_FILE = "test_batch"
CLOTHING1M_NUM_CLASSES = 14


def make_cifar10_arrays(num_train=500, num_test=200, seed=0):
    """Random CIFAR-10-shaped data.

    Returns:
      dict with train_images uint8 [num_train, 32, 32, 3], train_labels int64 [num_train]
      (every class present when num_train >= 10), test_images, test_labels.
    """
    rng = np.random.default_rng(seed)
    train_labels = np.arange(num_train, dtype=np.int64) % 10
    rng.shuffle(train_labels)
    return {
        "train_images": rng.integers(0, 256, size=(num_train, 32, 32, 3), dtype=np.uint8),
        "train_labels": train_labels,
        "test_images": rng.integers(0, 256, size=(num_test, 32, 32, 3), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=num_test).astype(np.int64),
    }


def _to_chw_rows(images):
    """uint8 [n, 32, 32, 3] → uint8 [n, 3072] in CIFAR's C×H×W order."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)


def _write_pickle_batch(path, images, labels, str_keys, legacy_numpy):
    """One CIFAR python batch, pickled with protocol 2 as the original Python 2 files were."""
    batch = {"batch_label": "batch", "data": _to_chw_rows(images),
             "labels": [int(v) for v in labels],
             "filenames": ["img_%d.png" % i for i in range(len(labels))]}
    if not str_keys:
        batch = {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in batch.items()}
    payload = pickle.dumps(batch, protocol=2)
    if legacy_numpy:
        # The original files name NumPy's module `numpy.core.multiarray` (NumPy 1.x).
        payload = payload.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    with open(path, "wb") as f:
        f.write(payload)


def write_cifar10_python(directory, num_train=500, num_test=200, seed=0,
                         subdir="cifar-10-batches-py", str_keys=False, legacy_numpy=True):
    """Writes CIFAR-10 python-version batches under `directory/subdir` ('' for none).

    The training images are split over the five batches in order (np.array_split).

    Args:
      str_keys: write str dict keys (as a Python 3 re-pickle would) instead of bytes.
      legacy_numpy: name `numpy.core.multiarray` in the pickles, as the original files do.

    Returns:
      dict of make_cifar10_arrays plus "batch_dir" (where the files are).
    """
    data = make_cifar10_arrays(num_train, num_test, seed)
    batch_dir = os.path.join(directory, subdir) if subdir else directory
    os.makedirs(batch_dir, exist_ok=True)
    parts = np.array_split(np.arange(num_train), 5)
    for name, idx in zip(CIFAR_TRAIN_FILES, parts):
        _write_pickle_batch(os.path.join(batch_dir, name), data["train_images"][idx],
                            data["train_labels"][idx], str_keys, legacy_numpy)
    _write_pickle_batch(os.path.join(batch_dir, CIFAR_TEST_FILE), data["test_images"],
                        data["test_labels"], str_keys, legacy_numpy)
    data["batch_dir"] = batch_dir
    return data


def _write_binary_batch(path, images, labels):
    records = np.concatenate([labels.astype(np.uint8)[:, None], _to_chw_rows(images)], axis=1)
    with open(path, "wb") as f:
        f.write(records.tobytes())


def write_cifar10_binary(directory, num_train=500, num_test=200, seed=0,
                         subdir="cifar-10-batches-bin"):
    """Writes CIFAR-10 binary-version batches under `directory/subdir` ('' for none).

    Returns:
      dict of make_cifar10_arrays plus "batch_dir".
    """
    data = make_cifar10_arrays(num_train, num_test, seed)
    batch_dir = os.path.join(directory, subdir) if subdir else directory
    os.makedirs(batch_dir, exist_ok=True)
    parts = np.array_split(np.arange(num_train), 5)
    for name, idx in zip(CIFAR_TRAIN_FILES, parts):
        _write_binary_batch(os.path.join(batch_dir, name + ".bin"),
                            data["train_images"][idx], data["train_labels"][idx])
    _write_binary_batch(os.path.join(batch_dir, CIFAR_TEST_FILE + ".bin"),
                        data["test_images"], data["test_labels"])
    data["batch_dir"] = batch_dir
    return data


def write_clothing1m(directory, num_images=40, seed=0, image_shape=(24, 32)):
    """Writes a Clothing1M-layout dataset root with `num_images` small JPEGs.

    The keys are split in order: the first half has clean labels (clean train, val, test
    in proportions 2:1:1); the first clean key and every clean key with an odd index also
    have a noisy label (the clean label or the next class, at random); the second half has
    only noisy labels and forms `noisy_train_key_list.txt`, together with the first clean
    train key (a key in both lists). Each image is a smooth colour gradient (JPEG-friendly)
    of shape image_shape + (3,).

    Returns:
      dict with "root", "keys" (all keys, in order), "clean" and "noisy" (dict key → label),
      "clean_train", "clean_val", "clean_test", "noisy_train" (lists of keys) and
      "images" (dict key → the RGB uint8 array that was encoded; the JPEG is lossy).
    """
    rng = np.random.default_rng(seed)
    height, width = image_shape
    keys, images = [], {}
    for i in range(num_images):
        key = "images/%d/%02d/img%05d.jpg" % (i % 10, i % 7, i)
        ys, xs = np.mgrid[0:height, 0:width]
        base = rng.integers(0, 256, size=3)
        step = rng.integers(-3, 4, size=(2, 3))
        rgb = np.clip(base + ys[..., None] * step[0] + xs[..., None] * step[1], 0, 255).astype(np.uint8)
        path = os.path.join(directory, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        keys.append(key)
        images[key] = rgb

    num_clean = num_images // 2
    clean_keys = keys[:num_clean]
    n_train = num_clean // 2
    n_val = num_clean // 4
    clean_train = clean_keys[:n_train]
    clean_val = clean_keys[n_train:n_train + n_val]
    clean_test = clean_keys[n_train + n_val:]
    clean = {k: int(rng.integers(0, CLOTHING1M_NUM_CLASSES)) for k in clean_keys}

    noisy = {}
    for i, k in enumerate(clean_keys):
        if i % 2 == 1 or i == 0:
            # Mostly right, sometimes wrong: a noisy label with a few kinds of mistake.
            noisy[k] = clean[k] if rng.random() < 0.5 else int((clean[k] + 1) % CLOTHING1M_NUM_CLASSES)
    noisy_only = keys[num_clean:]
    for k in noisy_only:
        noisy[k] = int(rng.integers(0, CLOTHING1M_NUM_CLASSES))
    noisy_train = noisy_only + [clean_train[0]]

    def write_lines(name, lines):
        with open(os.path.join(directory, name), "w") as f:
            f.write("".join(line + "\n" for line in lines))

    write_lines("clean_label_kv.txt", ["%s %d" % (k, clean[k]) for k in clean_keys])
    write_lines("noisy_label_kv.txt", ["%s %d" % (k, v) for k, v in noisy.items()])
    write_lines("clean_train_key_list.txt", clean_train)
    write_lines("clean_val_key_list.txt", clean_val)
    write_lines("clean_test_key_list.txt", clean_test)
    write_lines("noisy_train_key_list.txt", noisy_train)
    return {"root": directory, "keys": keys, "clean": clean, "noisy": noisy,
            "clean_train": clean_train, "clean_val": clean_val, "clean_test": clean_test,
            "noisy_train": noisy_train, "images": images}
