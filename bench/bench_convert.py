"""Benchmark: TSV → .npy conversion (util/convert_data.py) against the original's parser.

    python bench/bench_convert.py                       # default: 2000 rows x 2048 dims
    python bench/bench_convert.py --preset=rows4k       # 4000 rows x 2048 dims (the 5x target)
    python bench/bench_convert.py --num_rows=20000      # medium
    python bench/bench_convert.py --preset=food101n     # 310k x 2048 (about 5.7 GB of TSV: slow)

Writes a synthetic all-samples TSV and a verified TSV of N rows × D dims, converts each
with `python util/convert_data.py` in a child process and, in another child, with the
baseline: the original's line-by-line parser (split on tabs,
`[float(x) for x in feature.split(',')]`, lists of lists, np.array, np.save; for the
all split a per-class ragged object array, pickled, as the original wrote it). Each
child reports its own peak RSS (VmHWM) at exit, see common.run_python_child. Prints MB/s of TSV (1 MB =
1e6 bytes, wall clock of the whole child including interpreter start-up and imports),
peak RSS in MiB, and the ratios ours / baseline.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from bench import common
from noisylabels.errors import check_flag
from noisylabels.flagutil import run_tool

PRESETS = {
    "default": dict(num_rows=2000, img_dim=2048, num_classes=101),
    "rows4k": dict(num_rows=4000, img_dim=2048, num_classes=101),
    "medium": dict(num_rows=20000, img_dim=2048, num_classes=101),
    "food101n": dict(num_rows=common.FOOD101N["num_samples"], img_dim=2048, num_classes=101),
}

# The original's parser, run in a child process: `python -c BASELINE_CODE split tsv classes out`.
BASELINE_CODE = r'''
import sys
import numpy as np

split, tsv_path, class_list, output = sys.argv[1:5]
with open(class_list) as f:
    class_to_id = {name.strip(): i for i, name in enumerate(f) if name.strip()}
if split == "all":
    per_class = [[] for _ in class_to_id]
    for line in open(tsv_path):
        cols = line.rstrip("\n").split("\t")
        feature = [float(x) for x in cols[-1].split(",")]
        per_class[class_to_id[cols[-2]]].append(feature)
    # The original then saved np.array(per_class), a pickled ragged object array, which
    # NumPy 2 refuses to build; the same rows, grouped by class, go out as one plain array.
    data = np.array([row for rows in per_class for row in rows])
    np.save(output, data)
else:
    rows = []
    for line in open(tsv_path):
        cols = line.rstrip("\n").split("\t")
        vlabel = int(cols[-2])
        if vlabel == -1:
            continue
        feature = [float(x) for x in cols[-1].split(",")]
        rows.append(feature + [class_to_id[cols[-3]], vlabel])
    np.save(output, np.array(rows))
'''


def convert_ours(split, tsv_path, class_list, output_dir):
    """util/convert_data.py in a child process. Returns common.run_python_child's dict."""
    return common.run_python_child(
        os.path.join(common.ROOT, "util", "convert_data.py"),
        ["--split=" + split, "--class_list=" + class_list, "--data_path=" + tsv_path,
         "--output_dir=" + output_dir])


def convert_baseline(split, tsv_path, class_list, output_path):
    """The original's parser in a child process. Returns common.run_python_child's dict."""
    return common.run_python_child("-c", [BASELINE_CODE, split, tsv_path, class_list, output_path])


def run_benchmark(num_rows, img_dim, num_classes, work_dir=None, splits=("all", "verified")):
    """Writes the TSVs, converts them both ways, checks the outputs agree.

    Returns:
      dict split -> dict with tsv_mb, ours / baseline {seconds, mb_per_s, peak_rss_mb},
      speed_ratio (ours MB/s / baseline MB/s) and rss_ratio (ours / baseline peak RSS).
    """
    import numpy as np

    results = {}
    with common.temp_dir(work_dir) as tmp:
        class_list = os.path.join(tmp, "classes.txt")
        common.write_class_list(class_list, num_classes)
        for split in splits:
            tsv_path = os.path.join(tmp, split + ".tsv")
            size = common.write_tsv(tsv_path, split, num_rows, img_dim, num_classes, seed=1)
            npy_split = "train" if split == "verified" else "all"
            ours_dir = os.path.join(tmp, "ours")
            ours = convert_ours(npy_split, tsv_path, class_list, ours_dir)
            if ours["returncode"] != 0:
                raise RuntimeError("convert_data.py failed:\n" + ours["output"])
            baseline_path = os.path.join(tmp, "baseline_%s.npy" % split)
            baseline = convert_baseline(split, tsv_path, class_list, baseline_path)
            if baseline["returncode"] != 0:
                raise RuntimeError("baseline parser failed:\n" + baseline["output"])
            # Same content both ways (ours is float32, grouped by class for `all`).
            ours_array = np.load(os.path.join(ours_dir, npy_split + ".npy"))
            base_array = np.load(baseline_path)
            if split == "all":
                ours_array = ours_array[:, :img_dim]
            if ours_array.shape != base_array.shape or not np.allclose(ours_array, base_array, atol=1e-6):
                raise RuntimeError("%s: ours and the baseline disagree" % split)
            os.remove(tsv_path)
            mb = size / 1e6
            entry = {"tsv_mb": mb, "rows": num_rows}
            for name, run in (("ours", ours), ("baseline", baseline)):
                entry[name] = {"seconds": run["seconds"], "cpu_seconds": run["cpu_seconds"],
                               "mb_per_s": mb / run["seconds"], "peak_rss_mb": run["peak_rss_mb"]}
            entry["speed_ratio"] = common.ratio(entry["ours"]["mb_per_s"], entry["baseline"]["mb_per_s"])
            entry["rss_ratio"] = common.ratio(entry["ours"]["peak_rss_mb"], entry["baseline"]["peak_rss_mb"])
            results[split] = entry
    return results


def report(results, num_rows, img_dim):
    for split, r in results.items():
        common.print_table(
            "convert %s TSV: %d rows x %d dims, %.1f MB" % (split, num_rows, img_dim, r["tsv_mb"]),
            [("ours MB/s", r["ours"]["mb_per_s"], "MB/s"),
             ("baseline MB/s", r["baseline"]["mb_per_s"], "MB/s"),
             ("speed ratio ours/baseline", r["speed_ratio"], "x"),
             ("ours wall / CPU seconds", "%.2f / %.2f" % (r["ours"]["seconds"], r["ours"]["cpu_seconds"]), "s"),
             ("baseline wall / CPU seconds", "%.2f / %.2f" % (r["baseline"]["seconds"],
                                                              r["baseline"]["cpu_seconds"]), "s"),
             ("ours peak RSS", r["ours"]["peak_rss_mb"], "MiB"),
             ("baseline peak RSS", r["baseline"]["peak_rss_mb"], "MiB"),
             ("RSS ratio ours/baseline", r["rss_ratio"], "x")])


def define_flags():
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Size preset; explicit size flags override it.")
    flags.DEFINE_integer("num_rows", None, "Rows N of each TSV.")
    flags.DEFINE_integer("img_dim", None, "Features per row D.")
    flags.DEFINE_integer("num_classes", None, "Classes.")
    flags.DEFINE_string("work_dir", None, "Keep the files here (default: a temporary directory).")


def main(argv):
    check_flag(len(argv) == 1, "preset", "unexpected arguments %s" % argv[1:])
    sizes = common.sizes_from_flags(PRESETS, ("num_rows", "img_dim", "num_classes"))
    results = run_benchmark(work_dir=flags.FLAGS.work_dir, **sizes)
    report(results, sizes["num_rows"], sizes["img_dim"])


if __name__ == "__main__":
    define_flags()
    run_tool(main)
