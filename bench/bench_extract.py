"""Benchmark: feature extraction images/s, the whole tool against model.predict on arrays.

    python bench/bench_extract.py                     # default: 64 JPEGs of 224x224, ResNet-50
    python bench/bench_extract.py --preset=medium     # 512 JPEGs of 320x240 (resized to 224)

Both sides use the same ResNet-50 (keras.applications, include_top=False, pooling="avg",
random weights: the speed does not depend on their values; nothing is downloaded) and the
same batch size, in this process:
  - ours: `cleannet.tools.extract_features.extract` on an image list of JPEG files written here:
    list check, tf.data decoding (parallel, prefetch), resizing when needed,
    preprocess_input, the model, and writing the feature TSV. The model is built and its
    function traced once beforehand (a warm-up run on one batch), as a long run amortises.
  - baseline: `model.predict` on the same images already decoded, resized and
    preprocessed in memory (float32 arrays): the model alone.
images/s = images / wall time (median of --repeats runs each, alternated); the ratio
ours / baseline is the share of the model's speed that the whole tool keeps. The same per
CPU-second of this process (all its threads) is printed too: on a machine shared with
other jobs it varies less than the wall-clock figures.
"""

import os
import statistics
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

from bench import common
from noisylabels.flagutil import run_tool

PRESETS = {
    "default": dict(num_images=64, width=224, height=224),
    "medium": dict(num_images=512, width=320, height=240),
}


def write_images(directory, num_images, width, height, seed=0):
    """Writes num_images JPEGs (quality 90) of smooth gradients plus noise and their image
    list (3 columns, 4 classes). Returns (list path, float32 RGB arrays [n, height, width, 3])."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    lines, images = [], []
    for i in range(num_images):
        ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(50, 200, 3)
        bgr = np.clip(ramp + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
        name = "img_%05d.jpg" % i
        cv2.imwrite(os.path.join(directory, name), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append("k%d\t%s\tclass_%d\n" % (i, name, i % 4))
        images.append(cv2.imread(os.path.join(directory, name))[:, :, ::-1].astype(np.float32))
    list_path = os.path.join(directory, "list.tsv")
    with open(list_path, "w") as f:
        f.write("".join(lines))
    return list_path, np.stack(images)


def reuse_one_model(model, embed):
    """Makes cleannet.tools.extract_features use `model` and `embed` instead of building its own."""
    from cleannet import feature_extractor

    feature_extractor.build_backbone = lambda *args: model
    feature_extractor.make_embed_function = lambda *args: embed


def run_benchmark(num_images, width, height, batch_size=32, image_size=224, repeats=2):
    """Returns dict: ours / baseline images/s, seconds, and the load average before and after."""
    import keras
    import tensorflow as tf

    from cleannet import feature_extractor
    from cleannet.tools.extract_features import extract

    load_before = os.getloadavg()
    with common.temp_dir() as directory:
        list_path, images = write_images(directory, num_images, width, height)
        model = feature_extractor.build_backbone("resnet50", None, image_size)
        embed = feature_extractor.make_embed_function(model, "resnet50")
        reuse_one_model(model, embed)
        resized = tf.image.resize(images, [image_size, image_size]).numpy() if (height, width) != (
            image_size, image_size) else images
        arrays = keras.applications.resnet50.preprocess_input(resized.copy())
        outputs = iter(range(10 ** 6))

        def ours():
            extract(list_path, os.path.join(directory, "out_%d.tsv" % next(outputs)), weights=None,
                    batch_size=batch_size, image_size=image_size)

        def baseline():
            model.predict(arrays, batch_size=batch_size, verbose=0)

        with open(list_path) as f:
            head = "".join(f.readlines()[:batch_size])
        warmup_list = os.path.join(directory, "warmup.tsv")
        with open(warmup_list, "w") as f:
            f.write(head)
        extract(warmup_list, os.path.join(directory, "warmup_out.tsv"), weights=None, batch_size=batch_size,
                image_size=image_size)
        seconds, cpu_seconds = alternated_medians({"ours": ours, "baseline": baseline}, repeats)
    return dict(num_images=num_images, ours=num_images / seconds["ours"],
                baseline=num_images / seconds["baseline"], seconds=seconds, load_before=load_before,
                load_after=os.getloadavg(), ratio=common.ratio(seconds["baseline"], seconds["ours"]),
                ours_cpu=num_images / cpu_seconds["ours"], baseline_cpu=num_images / cpu_seconds["baseline"],
                cpu_ratio=common.ratio(cpu_seconds["baseline"], cpu_seconds["ours"]), cores=os.cpu_count())


def alternated_medians(fns, repeats):
    """Runs each function once untimed, then all in turn `repeats` times.

    Returns:
      (median wall seconds, median CPU seconds of this process, all threads): dicts by name.
      CPU time counts only this process's work, so it moves less than wall time when other
      jobs share the cores.
    """
    for fn in fns.values():
        fn()
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return ({name: statistics.median(t) for name, t in wall.items()},
            {name: statistics.median(t) for name, t in cpu.items()})


def report(results, sizes, batch_size, image_size):
    common.print_table(
        "feature extraction, ResNet-50 at %dx%d, %d JPEGs of %dx%d, batch %d, %d CPU cores, load average "
        "%.1f before / %.1f after" % (image_size, image_size, results["num_images"], sizes["width"],
                                       sizes["height"], batch_size, results["cores"], results["load_before"][0],
                                       results["load_after"][0]),
        [("ours: util/extract_features.py (decode + model + TSV)", results["ours"], "images/s"),
         ("baseline: model.predict on preprocessed arrays", results["baseline"], "images/s"),
         ("ratio ours / baseline", results["ratio"], "x"),
         ("ours per CPU-second (all threads)", results["ours_cpu"], "images/CPU-s"),
         ("baseline per CPU-second (all threads)", results["baseline_cpu"], "images/CPU-s"),
         ("CPU ratio ours / baseline", results["cpu_ratio"], "x")])


def define_flags():
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Sizes: default (64 images 224x224), medium "
                      "(512 images 320x240, resized).")
    flags.DEFINE_integer("num_images", None, "Images (overrides the preset).")
    flags.DEFINE_integer("width", None, "Width of the written JPEGs (overrides the preset).")
    flags.DEFINE_integer("height", None, "Height of the written JPEGs (overrides the preset).")
    flags.DEFINE_integer("batch_size", 32, "Batch size of both sides.", lower_bound=1)
    flags.DEFINE_integer("image_size", 224, "Model input side.", lower_bound=32)
    flags.DEFINE_integer("repeats", 2, "Timed runs of each side (alternated); the median is used.", lower_bound=1)


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    sizes = common.sizes_from_flags(PRESETS, ("num_images", "width", "height"))
    results = run_benchmark(batch_size=FLAGS.batch_size, image_size=FLAGS.image_size, repeats=FLAGS.repeats,
                            **sizes)
    report(results, sizes, FLAGS.batch_size, FLAGS.image_size)


if __name__ == "__main__":
    define_flags()
    run_tool(main)
