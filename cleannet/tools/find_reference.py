"""Finds each class's reference feature vectors by k-means (docs/originals.md#cleannet-files-and-formats).

    python util/find_reference.py --class_list=classes.txt --input_npy=data/all.npy \\
        --output_dir=data/ --num_ref=32 --img_dim=2048        # -> data/ref.npy

For every class c of the class list, k-means (OpenCV `cv2.kmeans`, as the original) runs
on that class's float32 feature vectors from all.npy with K = num_ref, k-means++ seeding,
10 attempts and termination after 50 iterations or a centre shift below 1e-4; the K
centres are ref[c]. Output: ref.npy, float32 [num_class, num_ref, img_dim], written
atomically.

Determinism: OpenCV's random generator is seeded with `seed + class_id` right before each
class's k-means, so a run with --num_workers=1 (serial) and one with many worker
processes give identical centres.

Classes with fewer than num_ref samples (k-means needs at least K points; the original
crashed on them):
  --small_class=error (default): an error naming the class and its sample count.
  --small_class=repeat: the fallback. The class's references are its own samples in
    all.npy order, cycled until num_ref rows are filled (sample i % n for row i); no
    k-means. A class with no samples at all is still an error.

all.npy is read with cleannet.datafiles.load_all (our grouped layout, or the original's
pickled layout only with --allow_pickle).
"""

from __future__ import annotations

import os


import multiprocessing
from collections.abc import Sequence

import cv2
import numpy as np
from absl import flags
from absl import logging

from cleannet import datafiles
from noisylabels import fileio
from cleannet import tsv_reader
from noisylabels.progress import Progress
from noisylabels.errors import InputError, check_flag
from noisylabels.flagutil import define_img_dim, define_num_ref, run_tool

KMEANS_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
KMEANS_ATTEMPTS = 10
SMALL_CLASS_CHOICES = ("error", "repeat")


def kmeans_centres(features: np.ndarray, num_ref: int, seed: int) -> np.ndarray:
    """k-means centres of one class.

    Args:
      features: float32 [n, h] with n >= num_ref.
      num_ref: K, the number of centres.
      seed: OpenCV RNG seed set right before the call.

    Returns:
      float32 [num_ref, h].
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    cv2.setRNGSeed(int(seed))
    _, _, centres = cv2.kmeans(features, num_ref, None, KMEANS_CRITERIA, KMEANS_ATTEMPTS,
                               cv2.KMEANS_PP_CENTERS)
    return centres


def repeat_samples(features: np.ndarray, num_ref: int) -> np.ndarray:
    """The --small_class=repeat fallback: rows i = features[i % n], float32 [num_ref, h]."""
    return np.asarray(features, dtype=np.float32)[np.arange(num_ref) % len(features)]


def _init_spawned_worker(num_threads):
    cv2.setNumThreads(num_threads)


def _slice_centres(task):
    class_id, class_features, num_ref, seed = task
    return class_id, kmeans_centres(class_features, num_ref, seed)


def find_references(features: np.ndarray, class_ids: np.ndarray, num_classes: int, num_ref: int, seed: int = 0,
                    num_workers: int = 1, small_class: str = "error", class_names: Sequence[str] | None = None,
                    path: str | None = None) -> np.ndarray:
    """Reference vectors of every class.

    Args:
      features: float32 [N, h], rows grouped by class (the all.npy layout).
      class_ids: int [N], non-decreasing, in [0, num_classes).
      num_classes: C.
      num_ref: references per class (K of k-means).
      seed: base seed; class c uses seed + c.
      num_workers: processes for k-means; 1 runs serially in this process.
      small_class: "error" or "repeat" (module docstring).
      class_names: names for messages (default: the ids).
      path: the input file, for messages.

    Returns:
      float32 [num_classes, num_ref, h].
    """
    if small_class not in SMALL_CLASS_CHOICES:
        raise InputError("must be one of %s, got %r" % (", ".join(SMALL_CLASS_CHOICES),
                                                         small_class), field="--small_class")
    if num_ref < 1:
        raise InputError("must be positive, got %d" % num_ref, field="--num_ref")
    if class_names is None:
        class_names = [str(c) for c in range(num_classes)]
    offsets = datafiles.class_offsets(class_ids, num_classes)
    counts = np.diff(offsets)
    small = np.flatnonzero(counts < num_ref)
    if small_class == "error" and small.size:
        c = small[0]
        raise InputError(
            "class %r (id %d) has %d samples, fewer than --num_ref=%d%s; k-means needs at "
            "least num_ref samples (--small_class=repeat fills such a class's references "
            "with its samples, repeated)"
            % (class_names[c], c, counts[c], num_ref,
               " (%d more classes too)" % (small.size - 1) if small.size > 1 else ""),
            path=path, field="class_name")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        c = empty[0]
        raise InputError("class %r (id %d) has no samples; --small_class=repeat needs at "
                         "least one" % (class_names[c], c), path=path, field="class_name")

    h = features.shape[1]
    ref = np.empty((num_classes, num_ref, h), dtype=np.float32)
    for c in small:
        ref[c] = repeat_samples(features[offsets[c]:offsets[c + 1]], num_ref)
        logging.info("class %d/%d %r: %d samples < %d, references repeat its samples",
                     c + 1, num_classes, class_names[c], counts[c], num_ref)

    todo = [c for c in range(num_classes) if counts[c] >= num_ref]
    num_workers = max(1, min(num_workers, len(todo)))
    if num_workers == 1:
        pool = None
        results = ((c, kmeans_centres(features[offsets[c]:offsets[c + 1]], num_ref, seed + c))
                   for c in todo)
    else:
        # Spawned, not forked: a forked child of a process whose libraries run thread pools
        # (OpenCV after a first kmeans, TensorFlow) can deadlock on a lock held by a thread
        # that was not copied. Each task carries its class's rows: the features cross once.
        pool = multiprocessing.get_context("spawn").Pool(num_workers, initializer=_init_spawned_worker,
                                                         initargs=(1,))
        tasks = ((c, np.asarray(features[offsets[c]:offsets[c + 1]]), num_ref, seed + c) for c in todo)
        results = pool.imap(_slice_centres, tasks)
    try:
        with Progress(total=len(todo), unit="classes", desc="k-means") as progress:
            for c, centres in results:
                ref[c] = centres
                logging.vlog(1, "class %d/%d %r: %d samples -> %d centres", c + 1, num_classes,
                             class_names[c], counts[c], num_ref)
                progress.update(1)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return ref


def define_flags() -> None:
    flags.DEFINE_string("class_list", None, "Class list: one class name per line.", required=True)
    flags.DEFINE_string("input_npy", None, "all.npy from util/convert_data.py --split=all.", required=True)
    flags.DEFINE_string("output_dir", None, "Directory for ref.npy.", required=True)
    define_num_ref()
    define_img_dim()
    flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                         "Processes running k-means in parallel over classes; 1: serial.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Base seed: class c's k-means uses seed + c.", lower_bound=0)
    flags.DEFINE_bool("allow_pickle", False, "Read a legacy all.npy written by the original "
                      "(a pickled object array). Pickles can run code: trusted files only.")
    flags.DEFINE_enum("small_class", "error", list(SMALL_CLASS_CHOICES),
                      "A class with fewer samples than num_ref: 'error' stops with its name; 'repeat' "
                      "fills its references with its samples, cycled.")


def main(argv: Sequence[str]) -> None:
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "input_npy", "unexpected arguments %s" % argv[1:])

    fileio.refuse_output_equal_to_inputs({"output_dir": os.path.join(FLAGS.output_dir, "ref.npy")},
                                         [("--input_npy", FLAGS.input_npy), ("--class_list", FLAGS.class_list)])
    class_names = tsv_reader.read_class_list(FLAGS.class_list)
    features, class_ids = datafiles.load_all(FLAGS.input_npy, FLAGS.img_dim,
                                             allow_pickle=FLAGS.allow_pickle)
    datafiles.check_class_ids(class_ids, len(class_names), FLAGS.input_npy)
    logging.info("%s: %d samples of %d classes; k-means with %d centres per class, %d "
                 "workers", FLAGS.input_npy, len(class_ids), len(class_names), FLAGS.num_ref,
                 FLAGS.num_workers)
    ref = find_references(features, class_ids, len(class_names), FLAGS.num_ref,
                          seed=FLAGS.seed, num_workers=FLAGS.num_workers,
                          small_class=FLAGS.small_class, class_names=class_names,
                          path=FLAGS.input_npy)
    output_path = os.path.join(FLAGS.output_dir, "ref.npy")
    fileio.save_npy(output_path, ref)
    logging.info("wrote %s: %s float32", output_path, ref.shape)


def run() -> None:
    """Console entry point (cleannet-find-reference)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
