"""Benchmark: inference.py --mode=inference end to end against convert_data.py --split=all.

    python bench/bench_inference_e2e.py                    # 4000 rows x 2048 dims, 101 classes
    python bench/bench_inference_e2e.py --preset=medium    # 20k rows (369 MB of TSV)

Both tools read the same synthetic all-samples TSV in child processes, start-up included:
  - convert: `python util/convert_data.py --split=all` (parse, write all.npy grouped by class);
  - inference: `python inference.py --mode=inference` with a random-weight checkpoint and
    ref.npy (parse, score every row, write one similarity per line);
  - inference with the usual interpreter exit (`app.run(cli_main(inference.main))`, the
    end of the process as before util/process_exit.py), for the before/after figure.
  - start-up: inference.py on the first row alone (loading the checkpoint dominates).
The four alternate, `--repeats` times; the median wall time of each is printed with the
ratios inference / convert (the target is at most 2).
"""

import os
import subprocess
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

from bench import common
from noisylabels.errors import check_flag
from noisylabels.flagutil import run_tool

PRESETS = {
    "default": dict(num_rows=4000, img_dim=2048, num_classes=101, num_ref=32),
    "medium": dict(num_rows=20000, img_dim=2048, num_classes=101, num_ref=32),
}

# inference.main run the usual way (interpreter teardown at exit): `python -c CODE FLAGS...`.
USUAL_EXIT_CODE = r"""
import sys
sys.argv[0] = "inference.py"
from cleannet.tools import inference
from absl import app
from noisylabels.errors import cli_main
from noisylabels.flagutil import parse_flags
inference.define_flags()
app.run(cli_main(inference.main), flags_parser=parse_flags)
"""


def write_model(directory, num_classes, img_dim, num_ref):
    """Writes ref.npy (random, [C, R, h]) into directory/data and a random-weight CleanNet
    checkpoint into directory/ckpt."""
    import numpy as np
    import tensorflow as tf
    from cleannet.checkpoints import make_checkpoint
    from cleannet.model import CleanNet
    from noisylabels.fileio import save_npy

    os.makedirs(os.path.join(directory, "data"), exist_ok=True)
    rng = np.random.default_rng(0)
    save_npy(os.path.join(directory, "data", "ref.npy"), rng.random((num_classes, num_ref, img_dim), dtype=np.float32))
    model = CleanNet(num_ref, img_dim).build_variables()
    path = make_checkpoint(model, tf.Variable(1, dtype=tf.int64)).save(os.path.join(directory, "ckpt", "ckpt"))
    try:  # what train.py writes beside each checkpoint (absent from trees older than it)
        from cleannet.checkpoints import write_inference_file
        from cleannet.numpy_model import NumpyCleanNet
    except ImportError:
        return
    write_inference_file(NumpyCleanNet.from_keras(model), path, 1)


def wall_seconds(argv, env):
    """Runs argv to its end; returns its wall seconds. Raises RuntimeError on a non-zero exit."""
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=common.ROOT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (argv[1], result.stderr.decode("utf-8", "replace")[-2000:]))
    return seconds


def run_benchmark(num_rows, img_dim, num_classes, num_ref, repeats=3, work_dir=None):
    """Returns dict: median seconds of convert, inference, inference_usual_exit; tsv_mb;
    ratio (inference / convert) and ratio_usual_exit."""
    import numpy as np

    env = dict(os.environ)
    env["PYTHONPATH"] = common.ROOT + os.pathsep + env.get("PYTHONPATH", "")
    with common.temp_dir(work_dir) as tmp:
        class_list = os.path.join(tmp, "classes.txt")
        common.write_class_list(class_list, num_classes)
        tsv_path = os.path.join(tmp, "all.tsv")
        size = common.write_tsv(tsv_path, "all", num_rows, img_dim, num_classes, seed=1)
        write_model(tmp, num_classes, img_dim, num_ref)
        one_row = os.path.join(tmp, "one_row.tsv")
        with open(tsv_path) as full, open(one_row, "w") as out:
            out.write(full.readline())
        inference_flags = ["--data_dir=" + os.path.join(tmp, "data"), "--image_feature_list=" + tsv_path,
                           "--class_list=" + class_list, "--checkpoint_dir=" + os.path.join(tmp, "ckpt"),
                           "--output_file=" + os.path.join(tmp, "pred.txt"), "--mode=inference",
                           "--img_dim=%d" % img_dim, "--num_ref=%d" % num_ref]
        commands = {
            "convert": [sys.executable, os.path.join(common.ROOT, "util", "convert_data.py"), "--split=all",
                        "--class_list=" + class_list, "--data_path=" + tsv_path,
                        "--output_dir=" + os.path.join(tmp, "npy")],
            "inference": [sys.executable, os.path.join(common.ROOT, "inference.py")] + inference_flags,
            "inference_usual_exit": [sys.executable, "-c", USUAL_EXIT_CODE] + inference_flags,
            # Start-up: the model loaded and one row scored.
            "startup": [sys.executable, os.path.join(common.ROOT, "inference.py")]
            + [f for f in inference_flags if not f.startswith(("--image_feature_list=", "--output_file="))]
            + ["--image_feature_list=" + one_row, "--output_file=" + os.path.join(tmp, "one_row_pred.txt")],
        }
        times = {name: [] for name in commands}
        for _ in range(repeats):
            for name, argv in commands.items():
                times[name].append(wall_seconds(argv, env))
        with open(os.path.join(tmp, "pred.txt")) as f:
            if sum(1 for _ in f) != num_rows:
                raise RuntimeError("inference.py did not write one line per row")
    results = {name: float(np.median(t)) for name, t in times.items()}
    results["tsv_mb"] = size / 1e6
    results["ratio"] = common.ratio(results["inference"], results["convert"])
    results["ratio_usual_exit"] = common.ratio(results["inference_usual_exit"], results["convert"])
    return results


def report(results, sizes):
    common.print_table("inference.py vs convert_data.py --split=all: %d rows x %d dims, %.1f MB (median wall, "
                       "start-up included)" % (sizes["num_rows"], sizes["img_dim"], results["tsv_mb"]),
                       [("convert_data.py --split=all", results["convert"], "s"),
                        ("inference.py --mode=inference", results["inference"], "s"),
                        ("ratio inference/convert (target <= 2)", results["ratio"], "x"),
                        ("inference.py, usual interpreter exit", results["inference_usual_exit"], "s"),
                        ("ratio with the usual exit", results["ratio_usual_exit"], "x"),
                        ("inference.py start-up (model load, one row)", results["startup"], "s")])


def define_flags():
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Size preset; explicit size flags override it.")
    flags.DEFINE_integer("num_rows", None, "Rows of the TSV.")
    flags.DEFINE_integer("img_dim", None, "Features per row.")
    flags.DEFINE_integer("num_classes", None, "Classes.")
    flags.DEFINE_integer("num_ref", None, "References per class.")
    flags.DEFINE_integer("repeats", 3, "Runs of each tool (alternated).", lower_bound=1)
    flags.DEFINE_string("work_dir", None, "Keep the files here (default: a temporary directory).")


def main(argv):
    check_flag(len(argv) == 1, "preset", "unexpected arguments %s" % argv[1:])
    sizes = common.sizes_from_flags(PRESETS, ("num_rows", "img_dim", "num_classes", "num_ref"))
    report(run_benchmark(repeats=flags.FLAGS.repeats, work_dir=flags.FLAGS.work_dir, **sizes), sizes)


if __name__ == "__main__":
    define_flags()
    run_tool(main)
