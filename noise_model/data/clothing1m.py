"""Clothing1M: read the original label and key lists, prepare docs/originals.md#noisy-label-model-clothing1m-protocol.

The dataset root holds `clean_label_kv.txt` and `noisy_label_kv.txt` ("key label" per
line, label in [0, 14)), `clean_train_key_list.txt`, `clean_val_key_list.txt`,
`clean_test_key_list.txt` and `noisy_train_key_list.txt` (one key per line). A key is an
image path relative to the root, e.g. `images/0/00/xyz.jpg`. CRLF line ends, blank lines
and a missing final newline are accepted; anything else malformed is an InputError naming
the file and line. Keys that could leave the root (absolute paths, `..` components) are
rejected.

Preparation:
- keys whose image file is missing: an error naming the key, or with `skip_missing`
  dropped from every list and counted;
- every listed image is checked before training (a format TensorFlow can decode, a JPEG
  that is not truncated, OpenCV can decode it); a bad one stops the run with an
  InputError naming the file (`on_bad_image="stop"`) or is dropped and counted
  (`on_bad_image="skip"`); the choice is stored in metadata.json for datasets.py;
- C = noise.compute_matrix_c over the keys of (clean train ∪ clean val) that also have a
  noisy label; every key with both labels gets a noise type (noise.get_noise_types);
- splits: `clean_train`, `clean_val`, `test` (the clean test list); `ntype_train`,
  `ntype_val`, `ntype_test` (the keys of that clean split with a noisy label);
  `mixed_train`: the clean-train keys drawn with replacement (seeded) as many times as
  there are noisy keys, plus every noisy key, shuffled (seeded);
- each split line is "key clean noisy ntype" with -1 for what is unknown: a key's clean
  label is given in the clean splits, and in mixed_train only to clean-train keys (a
  noisy key that happens to be in the clean val/test lists does not carry its clean label
  into training); its noisy label wherever it has one; its noise type where both are
  given;
- the mean image: float32 [256, 256, 3] RGB, the per-pixel mean of the clean-train images
  resized to 256×256 (bilinear, float), computed in one streaming pass.

Output (`output_dir`): `{split}.txt`, `matrix_c.npy` / `matrix_c.txt`, `mean_image.npy` and
`metadata.json` (dataset "clothing1m", num_classes 14, image_size 227, the absolute
dataset root, on_bad_image, counts), each written atomically, metadata.json last.
"""

import concurrent.futures
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional

import cv2
import numpy as np
from absl import logging

from noise_model import protocol
from noise_model.data import noise
from noise_model.data.clothing1m_format import CROP_SIZE, NUM_CLASSES, ON_BAD_IMAGE_CHOICES, RESIZE_SIZE, check_key
from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open, iter_text_lines, refuse_output_equal_to_inputs, save_npy
from noisylabels.strict_numbers import parse_int
from noisylabels.progress import Progress

CLEAN_KV = "clean_label_kv.txt"
NOISY_KV = "noisy_label_kv.txt"
KEY_LISTS = {
    "clean_train": "clean_train_key_list.txt",
    "clean_val": "clean_val_key_list.txt",
    "clean_test": "clean_test_key_list.txt",
    "noisy_train": "noisy_train_key_list.txt",
}
SPLITS = protocol.SPLITS["clothing1m"]
_CHUNK = 2048
# One line of a prepared split: (key, clean label, noisy label, noise type); -1 where unknown.
SplitEntry = tuple[str, int, int, int]


# ---------------------------------------------------------------------------------------
# Reading the list files.


def _read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yields (line number, stripped text) for the non-blank lines of a text file (a
    byte-order mark and CRLF line ends are accepted: noisylabels.fileio.iter_text_lines)."""
    if os.path.isdir(path):
        raise InputError("is a directory, expected a list file", path=path)
    for number, text in iter_text_lines(path):
        text = text.strip()
        if text:
            yield number, text


def read_label_kv(path: str, num_classes: int = NUM_CLASSES) -> dict[str, int]:
    """Reads "key label" lines.

    Returns:
      dict key → int label in [0, num_classes), in file order.
    """
    labels: dict[str, int] = {}
    for number, text in _read_lines(path):
        fields = text.split()
        if len(fields) != 2:
            raise InputError("expected 'key label', found %d fields" % len(fields),
                             path=path, line=number)
        key, value = fields
        check_key(key, path, number)
        label = parse_int(value, path, number, "label")
        if not 0 <= label < num_classes:
            raise InputError("label %d is outside [0, %d)" % (label, num_classes),
                             path=path, line=number)
        if labels.get(key, label) != label:
            raise InputError("key '%s' listed again with a different label (%d, was %d)"
                             % (key, label, labels[key]), path=path, line=number)
        labels[key] = label
    return labels


def read_key_list(path: str) -> list[tuple[str, int]]:
    """Reads one key per line.

    Returns:
      list of (key, line number), first occurrences only, in file order.
    """
    keys, seen, duplicates = [], set(), 0
    for number, text in _read_lines(path):
        fields = text.split()
        if len(fields) != 1:
            raise InputError("expected one key per line, found %d fields" % len(fields),
                             path=path, line=number)
        key = fields[0]
        check_key(key, path, number)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        keys.append((key, number))
    if duplicates:
        logging.warning("%s: %d duplicate keys ignored", path, duplicates)
    return keys


def read_clothing1m_lists(data_root: str) -> dict[str, Any]:
    """Reads the label and key files of a Clothing1M root.

    Returns:
      dict with "clean" and "noisy" (key → label) and, for each of clean_train, clean_val,
      clean_test, noisy_train, a list of (key, line number). Every key of a clean list has
      a clean label and every noisy-train key a noisy label (InputError otherwise).
    """
    if not os.path.isdir(data_root):
        raise InputError("directory not found", path=data_root, field="--data_root")
    lists: dict[str, Any] = {"clean": read_label_kv(os.path.join(data_root, CLEAN_KV)),
             "noisy": read_label_kv(os.path.join(data_root, NOISY_KV))}
    for name, filename in KEY_LISTS.items():
        path = os.path.join(data_root, filename)
        keys = read_key_list(path)
        labels, kv_name = (lists["noisy"], NOISY_KV) if name == "noisy_train" else (lists["clean"], CLEAN_KV)
        for key, number in keys:
            if key not in labels:
                raise InputError("key '%s' has no label in %s" % (key, kv_name), path=path, line=number)
        lists[name] = keys
    return lists


# ---------------------------------------------------------------------------------------
# Checking and reading images.


def _sniff_format(data: bytes) -> Optional[str]:
    """The image format TensorFlow's decode_image would use, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def image_problem(path: str, full_decode: bool = False) -> Optional[str]:
    """Checks that an image file can be decoded for training.

    A JPEG must end its last scan with an end-of-image marker: OpenCV decodes a truncated
    JPEG with a warning, TensorFlow refuses it, and no marker can occur inside the
    entropy-coded data, so the test is exact.

    Args:
      path: the image file.
      full_decode: decode at full size (otherwise at 1/8 scale, which still reads the
        whole compressed stream).

    Returns:
      None if the image is usable, else a short reason.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        return "cannot be read (%s)" % (err.strerror or err)
    image_format = _sniff_format(data)
    if image_format is None:
        return "is not a JPEG, PNG, GIF, BMP or WebP file"
    if image_format == "jpeg" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        return "is a truncated JPEG (no end-of-image marker after the last scan)"
    mode = cv2.IMREAD_COLOR if full_decode else cv2.IMREAD_REDUCED_GRAYSCALE_8
    image = cv2.imdecode(np.frombuffer(data, np.uint8), mode | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.size == 0:
        return "cannot be decoded"
    return None


def load_resized_rgb(path: str, size: int = RESIZE_SIZE) -> np.ndarray:
    """Reads an image as float32 RGB [size, size, 3] (bilinear resize, no EXIF rotation).

    Matches datasets.py: tf.io.decode_image (RGB, EXIF orientation ignored) followed by
    tf.image.resize (bilinear, half-pixel centres) on float values.
    """
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise InputError("cannot be decoded", path=path)
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def _in_chunks(items: Sequence[str], function: Callable[[str], Any],
               num_workers: int) -> Iterator[tuple[str, Any]]:
    """Yields (item, function(item)) over `items` with a thread pool, in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_workers) as pool:
        for start in range(0, len(items), _CHUNK):
            chunk = items[start:start + _CHUNK]
            yield from zip(chunk, pool.map(function, chunk))


def check_images(data_root: str, keys: Sequence[str], skip_missing: bool, on_bad_image: str,
                 num_workers: int, where: dict[str, tuple[str, int]]) -> tuple[set[str], int, int]:
    """Checks that every key's image exists and decodes.

    Args:
      keys: unique keys to check.
      where: dict key → (list file, line number) for messages.

    Returns:
      (set of usable keys, number of missing keys skipped, number of bad images skipped).
    """
    missing, present = 0, []
    for key in keys:
        if os.path.isfile(os.path.join(data_root, key)):
            present.append(key)
        elif skip_missing:
            missing += 1
        else:
            path, line = where[key]
            raise InputError("no image file for key '%s' (pass --skip_missing to skip such "
                             "keys)" % key, path=path, line=line)
    if missing:
        logging.warning("Skipped %d keys without an image file", missing)

    usable, bad = set(), 0
    logging.info("Checking %d images", len(present))
    def check(key: str) -> Optional[str]:
        return image_problem(os.path.join(data_root, key))

    with Progress(total=len(present), unit="images", desc="checking images") as progress:
        for key, problem in _in_chunks(present, check, num_workers):
            if problem is None:
                usable.add(key)
            elif on_bad_image == "skip":
                bad += 1
                logging.warning("Skipping %s: %s", os.path.join(data_root, key), problem)
            else:
                raise InputError("image %s (pass --on_bad_image=skip to drop such images)" % problem,
                                 path=os.path.join(data_root, key))
            progress.update(1)
    if bad:
        logging.warning("Skipped %d images that cannot be decoded", bad)
    return usable, missing, bad


def compute_mean_image(data_root: str, keys: Sequence[str], num_workers: int,
                       size: int = RESIZE_SIZE) -> np.ndarray:
    """Per-pixel mean of the images of `keys` resized to size×size: float32 [size, size, 3]."""
    if not keys:
        raise InputError("no clean training images to compute the mean image from",
                         path=os.path.join(data_root, KEY_LISTS["clean_train"]))
    total = np.zeros((size, size, 3), np.float64)

    def load(key: str) -> np.ndarray:
        return load_resized_rgb(os.path.join(data_root, key), size)

    with Progress(total=len(keys), unit="images", desc="mean image") as progress:
        for _, image in _in_chunks(list(keys), load, num_workers):
            total += image
            progress.update(1)
    logging.info("Mean image over %d clean training images", len(keys))
    return (total / len(keys)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# The protocol.


def build_splits(clean: dict[str, int], noisy: dict[str, int], clean_train: list[str],
                 clean_val: list[str], clean_test: list[str], noisy_train: list[str],
                 seed: int) -> tuple[dict[str, list[SplitEntry]], np.ndarray, dict[str, Any]]:
    """Builds C, the noise types and the split lists of docs/originals.md#noisy-label-model-clothing1m-protocol.

    Args:
      clean, noisy: dict key → label.
      clean_train, clean_val, clean_test, noisy_train: lists of keys (images checked).
      seed: seeds the upsampling and the shuffle of mixed_train.

    Returns:
      (splits: dict name → list of (key, clean, noisy, ntype), matrix_c float64 [14, 14],
       stats dict).
    """
    pair_keys = [k for k in dict.fromkeys(clean_train + clean_val) if k in noisy]
    if not pair_keys:
        raise InputError("no clean training or validation key has a noisy label in %s, so C "
                         "cannot be estimated" % NOISY_KV)
    matrix_c = noise.compute_matrix_c(np.array([clean[k] for k in pair_keys], np.int64),
                                      np.array([noisy[k] for k in pair_keys], np.int64),
                                      NUM_CLASSES)
    both = [k for k in dict.fromkeys(clean_train + clean_val + clean_test + noisy_train)
            if k in clean and k in noisy]
    types = noise.get_noise_types(np.array([clean[k] for k in both], np.int64),
                                  np.array([noisy[k] for k in both], np.int64), matrix_c)
    ntype = dict(zip(both, (int(t) for t in types)))

    def entry(key: str, clean_known: bool = True) -> SplitEntry:
        c = clean[key] if clean_known and key in clean else -1
        n = noisy.get(key, -1)
        z = ntype.get(key, -1) if c >= 0 and n >= 0 else -1
        return (key, c, n, z)

    clean_train_set = set(clean_train)
    rng = np.random.default_rng(seed)
    upsampled = [clean_train[i] for i in rng.integers(0, len(clean_train), size=len(noisy_train))]
    mixed = ([entry(k) for k in upsampled]
             + [entry(k, clean_known=k in clean_train_set) for k in noisy_train])
    mixed = [mixed[i] for i in rng.permutation(len(mixed))]

    splits = {
        "clean_train": [entry(k) for k in clean_train],
        "clean_val": [entry(k) for k in clean_val],
        "mixed_train": mixed,
        "ntype_train": [entry(k) for k in clean_train if k in noisy],
        "ntype_val": [entry(k) for k in clean_val if k in noisy],
        "ntype_test": [entry(k) for k in clean_test if k in noisy],
        "test": [entry(k) for k in clean_test],
    }
    stats = {
        "num_c_pairs": len(pair_keys),
        "noise_rate_of_c_pairs": float(np.mean([clean[k] != noisy[k] for k in pair_keys])),
        "noise_type_counts": [int(np.sum(np.asarray(types) == z)) for z in range(3)],
        "split_sizes": {name: len(lines) for name, lines in splits.items()},
    }
    return splits, matrix_c, stats


def write_split(path: str, entries: Sequence[SplitEntry]) -> None:
    """Writes "key clean noisy ntype" lines atomically."""
    with atomic_open(path, "w") as f:
        for key, c, n, z in entries:
            f.write("%s %d %d %d\n" % (key, c, n, z))


def prepare_clothing1m(data_root: str, output_dir: str, seed: int = 0, skip_missing: bool = False,
                       on_bad_image: str = "stop", num_workers: int = 0) -> dict[str, Any]:
    """Writes the prepared Clothing1M layout (see the module docstring).

    Args:
      data_root: the dataset root (list files and images/).
      output_dir: created if needed.
      seed: seeds the upsampling and shuffle of mixed_train.
      skip_missing: drop keys without an image file instead of stopping.
      on_bad_image: "stop" (InputError naming the file) or "skip" (drop and count).
      num_workers: threads for reading images (0: one per CPU core).

    Returns:
      the metadata dict written to metadata.json.
    """
    if on_bad_image not in ON_BAD_IMAGE_CHOICES:
        raise InputError("must be one of %s, got '%s'" % ("|".join(ON_BAD_IMAGE_CHOICES), on_bad_image),
                         field="--on_bad_image")
    num_workers = num_workers or os.cpu_count() or 1
    outputs = [name + ".txt" for name in SPLITS] + ["matrix_c.npy", "matrix_c.txt", "mean_image.npy", "metadata.json"]
    inputs = [("a list of --data_root", os.path.join(data_root, name))
              for name in list(KEY_LISTS.values()) + [CLEAN_KV, NOISY_KV]]
    for name in outputs:
        refuse_output_equal_to_inputs({"output_dir": os.path.join(output_dir, name)}, inputs)
    lists = read_clothing1m_lists(data_root)
    where = {}
    for name in ("noisy_train", "clean_test", "clean_val", "clean_train"):
        for key, line in lists[name]:
            where[key] = (os.path.join(data_root, KEY_LISTS[name]), line)
    for name in KEY_LISTS:
        logging.info("%s: %d keys", KEY_LISTS[name], len(lists[name]))
    logging.info("%s: %d labels; %s: %d labels", CLEAN_KV, len(lists["clean"]),
                 NOISY_KV, len(lists["noisy"]))

    all_keys = list(dict.fromkeys(k for name in KEY_LISTS for k, _ in lists[name]))
    usable, num_missing, num_bad = check_images(data_root, all_keys, skip_missing, on_bad_image,
                                                num_workers, where)
    kept = {name: [k for k, _ in lists[name] if k in usable] for name in KEY_LISTS}
    for name in ("clean_train", "noisy_train"):
        if not kept[name]:
            raise InputError("no usable keys left", path=os.path.join(data_root, KEY_LISTS[name]))

    splits, matrix_c, stats = build_splits(lists["clean"], lists["noisy"], kept["clean_train"],
                                           kept["clean_val"], kept["clean_test"],
                                           kept["noisy_train"], seed)
    logging.info("C estimated from %d (clean, noisy) pairs; their noise rate %.4f; noise "
                 "types (noise-free, random, confusing): %s", stats["num_c_pairs"],
                 stats["noise_rate_of_c_pairs"], stats["noise_type_counts"])
    with np.printoptions(precision=3, suppress=True, linewidth=200):
        logging.info("Estimated C ([noisy, clean]):\n%s", matrix_c)
    logging.info("Split sizes: %s", stats["split_sizes"])
    mean_image = compute_mean_image(data_root, kept["clean_train"], num_workers)

    os.makedirs(output_dir, exist_ok=True)
    for name in SPLITS:
        write_split(os.path.join(output_dir, name + ".txt"), splits[name])
    save_npy(os.path.join(output_dir, "matrix_c.npy"), np.asarray(matrix_c, np.float64))
    with atomic_open(os.path.join(output_dir, "matrix_c.txt"), "w") as f:
        np.savetxt(f, np.asarray(matrix_c, np.float64), fmt="%.6f")
    save_npy(os.path.join(output_dir, "mean_image.npy"), mean_image)
    metadata = {
        "dataset": "clothing1m", "num_classes": NUM_CLASSES, "image_size": CROP_SIZE,
        "resize_size": RESIZE_SIZE, "dataset_root": os.path.abspath(data_root),
        "on_bad_image": on_bad_image, "skip_missing": bool(skip_missing), "seed": seed,
        "num_missing_skipped": num_missing, "num_bad_images_skipped": num_bad,
        "splits": list(SPLITS), **stats,
    }
    with atomic_open(os.path.join(output_dir, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
        f.write("\n")
    return metadata
