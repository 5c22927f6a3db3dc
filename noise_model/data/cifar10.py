"""CIFAR-10 with synthetic label noise: read the original batches, prepare docs/originals.md#noisy-label-model-cifar-10-protocol.

`load_cifar10(data_dir)` reads either download of CIFAR-10:
- the python version (`data_batch_1` .. `data_batch_5`, `test_batch`: pickled dicts with
  `data` uint8 [n, 3072] and `labels`), directly in `data_dir` or in
  `data_dir/cifar-10-batches-py/`. The pickles are read with a restricted unpickler that
  admits only the few globals a NumPy array and plain containers need; anything else is
  refused with an InputError (a pickle can otherwise run arbitrary code);
- the binary version (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`: records
  of 1 label byte + 3072 pixel bytes), directly in `data_dir` or in
  `data_dir/cifar-10-batches-bin/`.
Pixels are stored C×H×W (1024 red, 1024 green, 1024 blue, each row-major); they are
returned as uint8 [n, 32, 32, 3] (RGB).

`build_noisy_protocol(...)` builds the splits of docs/originals.md#noisy-label-model-cifar-10-protocol (shared with `digits.py`):
- the first `num_clean` training images keep their true labels ("clean");
- every training label is corrupted with Q = noise.generate_matrix_q(level, L, seed)
  (noise.corrupt with seed + 1);
- C is estimated from the `num_clean` (true, noisy) pairs, which also get noise types;
  the first 80% of them (in order) form `ntype_train`, the rest `ntype_test`;
- `mixed_train` is every training image, shuffled with seed + 2: the clean ones carry
  (true label, -1, noise type), the others (-1, noisy label, -1);
- `clean_train` = the clean images with (true, noisy, noise type); `test` = the test set
  with (true, -1, -1) (its labels are never corrupted);
- the mean image is the per-pixel mean of all training images, float32 [32, 32, 3].

`write_prepared(...)` writes the prepared layout of the noise_model contract:
`metadata.json`, `mean_image.npy`, `matrix_q.npy/.txt`, `matrix_c.npy/.txt` and per split
`{split}_images.npy` uint8 [n, 32, 32, 3] + `{split}_labels.npy` int64 [n, 3] with columns
(clean label, noisy label, noise type), -1 where unknown. Every file is written
atomically; `metadata.json` comes last.
"""

import builtins
import codecs
import importlib
import json
import os
import pickle
from typing import Any, BinaryIO, Callable, Optional

import numpy as np
from absl import logging
from numpy.typing import ArrayLike

from noise_model import protocol
from noise_model.data import noise
from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open, save_npy
from noisylabels.progress import Progress

NUM_CLASSES = 10
IMAGE_SIZE = 32
RECORD_PIXELS = 3 * IMAGE_SIZE * IMAGE_SIZE
TRAIN_BATCHES = ["data_batch_%d" % i for i in range(1, 6)]
TEST_BATCH = "test_batch"
SPLITS = protocol.SPLITS["cifar10"]
NTYPE_TRAIN_SHARE = 0.8


# ---------------------------------------------------------------------------------------
# Reading the original batches.


def _numpy_global(module_name: str, name: str) -> Optional[Callable[..., Any]]:
    """Imports `module_name.name`, trying NumPy 2's `numpy._core` and NumPy 1's `numpy.core`."""
    for candidate in (module_name.replace("numpy.core", "numpy._core"),
                      module_name.replace("numpy._core", "numpy.core")):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    return None


# (module, name) pairs a pickled NumPy array in a plain dict / list may refer to. Python 2
# pickles (the original files) name `numpy.core.multiarray`; Python 3 protocol-2 pickles
# also use `_codecs.encode` to rebuild bytes; protocol 5 uses `_frombuffer`.
_NUMPY_GLOBALS = [
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
]
_PLAIN_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str",
                   "int", "float", "complex", "bool"}


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only NumPy-array and plain-container globals."""

    def __init__(self, file: BinaryIO, path: str) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            found = _numpy_global(module, name)
            if found is not None:
                return found
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":
            return codecs.encode
        if module in ("builtins", "__builtin__") and name in _PLAIN_BUILTINS:
            return getattr(builtins, name)
        raise InputError("refused to unpickle global '%s.%s': a CIFAR-10 batch holds only "
                         "NumPy arrays and plain containers" % (module, name), path=self._path)


def _check_labels(labels: object, num_images: int, path: str) -> np.ndarray:
    """Validates CIFAR labels (a list or array of n ints in [0, 10)); returns int64 [n]."""
    if isinstance(labels, np.ndarray):
        array = labels
    elif isinstance(labels, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
            raise InputError("labels must be integers", path=path, field="labels")
        array = np.asarray(labels, dtype=np.int64)
    else:
        raise InputError("labels must be a list of ints, found %s" % type(labels).__name__,
                         path=path, field="labels")
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InputError("labels must be a 1-D integer array, found dtype %s shape %s"
                         % (array.dtype, array.shape), path=path, field="labels")
    if len(array) != num_images:
        raise InputError("%d labels for %d images" % (len(array), num_images),
                         path=path, field="labels")
    if len(array) and (array.min() < 0 or array.max() >= NUM_CLASSES):
        raise InputError("labels must be in [0, %d), found %d..%d"
                         % (NUM_CLASSES, array.min(), array.max()), path=path, field="labels")
    return array.astype(np.int64)


def _rows_to_images(rows: np.ndarray) -> np.ndarray:
    """uint8 [n, 3072] (C×H×W per row) → uint8 [n, 32, 32, 3]."""
    images = rows.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images)


def read_python_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one python-version batch → (images uint8 [n, 32, 32, 3], labels int64 [n])."""
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, path).load()
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeError, OverflowError, MemoryError) as err:
        raise InputError("not a readable CIFAR-10 python batch (%s: %s)"
                         % (type(err).__name__, err), path=path) from None
    if not isinstance(batch, dict):
        raise InputError("expected a pickled dict, found %s" % type(batch).__name__, path=path)
    batch = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise InputError("missing key '%s' (found %s)" % (key, sorted(map(str, batch))),
                             path=path)
    data = batch["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == RECORD_PIXELS):
        raise InputError("'data' must be a uint8 array [n, %d], found %s"
                         % (RECORD_PIXELS, _describe(data)), path=path, field="data")
    labels = _check_labels(batch["labels"], data.shape[0], path)
    return _rows_to_images(data), labels


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return "%s %s" % (value.dtype, list(value.shape))
    return type(value).__name__


def read_binary_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one binary-version batch → (images uint8 [n, 32, 32, 3], labels int64 [n])."""
    record = 1 + RECORD_PIXELS
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise InputError("cannot read (%s)" % err, path=path) from None
    if raw.size == 0 or raw.size % record:
        raise InputError("size %d bytes is not a positive multiple of the %d-byte record "
                         "(1 label byte + %d pixel bytes)" % (raw.size, record, RECORD_PIXELS),
                         path=path)
    raw = raw.reshape(-1, record)
    labels = raw[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise InputError("record %d has label %d, expected 0..%d"
                         % (bad[0], labels[bad[0]], NUM_CLASSES - 1), path=path)
    return _rows_to_images(raw[:, 1:]), labels


def find_batches(data_dir: str) -> tuple[str, str]:
    """Locates the CIFAR-10 batches under `data_dir`.

    Returns:
      (batch_dir, version) with version "python" or "binary".

    Raises:
      InputError: no complete set of batches; names the files missing from the most
        complete candidate.
    """
    if not os.path.isdir(data_dir):
        raise InputError("directory not found", path=data_dir, field="--data_dir")
    python_names = TRAIN_BATCHES + [TEST_BATCH]
    binary_names = [n + ".bin" for n in python_names]
    candidates = [
        (data_dir, "python", python_names),
        (os.path.join(data_dir, "cifar-10-batches-py"), "python", python_names),
        (data_dir, "binary", binary_names),
        (os.path.join(data_dir, "cifar-10-batches-bin"), "binary", binary_names),
    ]
    best = None
    for directory, version, names in candidates:
        missing = [n for n in names if not os.path.isfile(os.path.join(directory, n))]
        if not missing:
            return directory, version
        if len(missing) < len(names) and (best is None or len(missing) < len(best[2])):
            best = (directory, version, missing)
    if best is not None:
        raise InputError("incomplete CIFAR-10 %s version: missing %s"
                         % (best[1], ", ".join(best[2])), path=best[0])
    raise InputError("no CIFAR-10 batches found: expected data_batch_1..5 and test_batch "
                     "(python version) or data_batch_1.bin..5.bin and test_batch.bin (binary "
                     "version), directly or in cifar-10-batches-py/ or cifar-10-batches-bin/",
                     path=data_dir)


def load_cifar10(data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads CIFAR-10 (python or binary version, auto-detected).

    Returns:
      (train_images uint8 [50000, 32, 32, 3], train_labels int64 [50000],
       test_images uint8 [10000, 32, 32, 3], test_labels int64 [10000]) for the real data
      set; the training batches are concatenated in order 1..5.
    """
    batch_dir, version = find_batches(data_dir)
    if version == "python":
        read, suffix = read_python_batch, ""
    else:
        read, suffix = read_binary_batch, ".bin"
    logging.info("Reading the CIFAR-10 %s version from %s", version, batch_dir)
    parts = []
    with Progress(total=len(TRAIN_BATCHES) + 1, unit="batches", desc="reading CIFAR-10") as progress:
        for name in TRAIN_BATCHES:
            parts.append(read(os.path.join(batch_dir, name + suffix)))
            progress.update(1)
        test_images, test_labels = read(os.path.join(batch_dir, TEST_BATCH + suffix))
        progress.update(1)
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    return train_images, train_labels, test_images, test_labels


# ---------------------------------------------------------------------------------------
# The noisy-label protocol (shared with digits.py).


def _label_table(clean: ArrayLike, noisy: ArrayLike, ntype: ArrayLike) -> np.ndarray:
    """Stacks three int arrays (or -1 scalars) into int64 [n, 3]."""
    n = max(np.size(v) for v in (clean, noisy, ntype))
    columns = [np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)) for v in (clean, noisy, ntype)]
    return np.stack(columns, axis=1).astype(np.int64)


def build_noisy_protocol(train_images: np.ndarray, train_labels: ArrayLike,
                         test_images: np.ndarray, test_labels: np.ndarray,
                         noise_level: float, num_clean: int, seed: int,
                         num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Builds the splits, matrices and mean image of docs/originals.md#noisy-label-model-cifar-10-protocol.

    Args:
      train_images: uint8 [N, H, W, 3]; the first `num_clean` are the clean subset.
      train_labels: int64 [N] true labels in [0, num_classes).
      test_images, test_labels: uint8 [T, H, W, 3], int64 [T].
      noise_level: in [0, 1], the off-diagonal mass of each column of Q.
      num_clean: 2 <= num_clean <= N.
      seed: seeds Q (seed), the corruption (seed + 1) and the mixed-set shuffle (seed + 2).

    Returns:
      dict with "splits" (name → (images uint8, labels int64 [n, 3])), "matrix_q",
      "matrix_c" (float64 [L, L], [noisy, clean]), "mean_image" (float32 [H, W, 3]),
      "noisy_labels" (int64 [N]) and "stats" (a JSON-ready dict of counts and rates).
    """
    train_labels = np.asarray(train_labels, dtype=np.int64)
    num_train = len(train_labels)
    if not 2 <= num_clean <= num_train:
        raise InputError("must be in [2, %d] (the number of training images), got %d"
                         % (num_train, num_clean), field="--num_clean")
    matrix_q = noise.generate_matrix_q(noise_level, num_classes, seed)
    noisy_labels = np.asarray(noise.corrupt(train_labels, matrix_q, seed + 1), dtype=np.int64)

    clean_true = train_labels[:num_clean]
    clean_noisy = noisy_labels[:num_clean]
    matrix_c = noise.compute_matrix_c(clean_true, clean_noisy, num_classes)
    ntypes = np.asarray(noise.get_noise_types(clean_true, clean_noisy, matrix_c), dtype=np.int64)
    clean_table = _label_table(clean_true, clean_noisy, ntypes)
    num_ntype_train = int(num_clean * NTYPE_TRAIN_SHARE)

    is_clean = np.arange(num_train) < num_clean
    mixed_table = np.full((num_train, 3), -1, dtype=np.int64)
    mixed_table[:num_clean, 0] = clean_true
    mixed_table[:num_clean, 2] = ntypes
    mixed_table[num_clean:, 1] = noisy_labels[num_clean:]
    order = np.random.default_rng(seed + 2).permutation(num_train)

    splits = {
        "clean_train": (train_images[:num_clean], clean_table),
        "mixed_train": (train_images[order], mixed_table[order]),
        "ntype_train": (train_images[:num_ntype_train], clean_table[:num_ntype_train]),
        "ntype_test": (train_images[num_ntype_train:num_clean], clean_table[num_ntype_train:]),
        "test": (test_images, _label_table(test_labels, -1, -1)),
    }
    mean_image = train_images.mean(axis=0, dtype=np.float64).astype(np.float32)
    stats = {
        "num_train": int(num_train),
        "num_test": int(len(test_labels)),
        "num_clean": int(num_clean),
        "num_noisy_only": int(num_train - num_clean),
        "actual_noise_rate": float(np.mean(noisy_labels != train_labels)),
        "actual_noise_rate_noisy_only": float(np.mean(noisy_labels[~is_clean] != train_labels[~is_clean]))
        if num_train > num_clean else 0.0,
        "noise_type_counts": [int(np.sum(ntypes == z)) for z in range(3)],
        "split_sizes": {name: int(len(table)) for name, (_, table) in splits.items()},
    }
    return {"splits": splits, "matrix_q": matrix_q, "matrix_c": matrix_c,
            "mean_image": mean_image, "noisy_labels": noisy_labels, "stats": stats}


def save_matrix_txt(path: str, matrix: ArrayLike) -> None:
    """Writes a matrix as text (one row per line, 6 decimals), atomically."""
    with atomic_open(path, "w") as f:
        np.savetxt(f, np.asarray(matrix, dtype=np.float64), fmt="%.6f")


def write_prepared(output_dir: str, dataset: str, protocol: dict[str, Any],
                   metadata: dict[str, Any]) -> None:
    """Writes the cifar10/digits prepared layout (see the module docstring).

    Args:
      output_dir: created if needed.
      dataset: "cifar10" or "digits" (stored in metadata.json).
      protocol: the dict of build_noisy_protocol.
      metadata: extra JSON-ready entries for metadata.json (flags, source).
    """
    os.makedirs(output_dir, exist_ok=True)
    total = sum(len(labels) for _, labels in protocol["splits"].values())
    with Progress(total=total, unit="images", desc="writing %s" % dataset) as progress:
        for split, (images, labels) in protocol["splits"].items():
            save_npy(os.path.join(output_dir, "%s_images.npy" % split), np.asarray(images, np.uint8))
            save_npy(os.path.join(output_dir, "%s_labels.npy" % split), np.asarray(labels, np.int64))
            progress.update(len(labels))
    save_npy(os.path.join(output_dir, "mean_image.npy"), protocol["mean_image"].astype(np.float32))
    for name in ("matrix_q", "matrix_c"):
        save_npy(os.path.join(output_dir, name + ".npy"), np.asarray(protocol[name], np.float64))
        save_matrix_txt(os.path.join(output_dir, name + ".txt"), protocol[name])
    num_classes = int(np.asarray(protocol["matrix_c"]).shape[0])
    image_size = int(protocol["mean_image"].shape[0])
    content = {"dataset": dataset, "num_classes": num_classes, "image_size": image_size,
               "splits": list(protocol["splits"]), **protocol["stats"], **metadata}
    with atomic_open(os.path.join(output_dir, "metadata.json"), "w") as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")


def log_protocol(protocol: dict[str, Any]) -> None:
    """Logs the counts, the actual noise rate and C."""
    stats = protocol["stats"]
    logging.info("Training images: %d (%d clean, %d with noisy labels only); test images: %d",
                 stats["num_train"], stats["num_clean"], stats["num_noisy_only"], stats["num_test"])
    logging.info("Actual noise rate: %.4f over all training labels, %.4f over the noisy-only "
                 "images", stats["actual_noise_rate"], stats["actual_noise_rate_noisy_only"])
    logging.info("Noise types of the clean pairs (noise-free, random, confusing): %s",
                 stats["noise_type_counts"])
    logging.info("Split sizes: %s", stats["split_sizes"])
    with np.printoptions(precision=3, suppress=True, linewidth=150):
        logging.info("Estimated C ([noisy, clean]; column j = p(noisy | clean = j)):\n%s",
                     np.asarray(protocol["matrix_c"]))
