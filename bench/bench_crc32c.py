"""Benchmark: CRC-32C of checkpoint-sized buffers, NumPy lanes vs a byte-by-byte Python loop.

    python bench/bench_crc32c.py                   # 10 MB (a CleanNet checkpoint's tensors); loop on 256 KB
    python bench/bench_crc32c.py --preset=medium   # 100 MB; loop on 1 MB

The checkpoint reader (noisylabels/tensor_bundle.py) checks every tensor it reads with
CRC-32C, so the CRC's speed bounds how fast inference can start. Both sides run in this
process on random bytes:
  - ours: noisylabels.crc32c.crc32c (lanes of 4-byte NumPy table steps, merged with GF(2)
    shifts) on --size_mb megabytes (10^6 bytes);
  - baseline: noisylabels.crc32c.crc32c_bytewise (one table lookup per byte in Python) on
    --baseline_kb kilobytes (10^3 bytes), smaller because it runs at a few MB/s.
Both give the same CRC on the baseline's buffer (checked). Prints the fastest of --repeats
timings of each as MB/s and the ratio ours / baseline.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from bench import common
from noisylabels.errors import check_flag
from noisylabels.flagutil import run_tool

PRESETS = {"default": dict(size_mb=10, baseline_kb=256), "medium": dict(size_mb=100, baseline_kb=1000),
           "food101n": dict(size_mb=100, baseline_kb=1000)}


def run_benchmark(size_mb, baseline_kb, repeats=5, seed=0):
    """Returns dict: ours_mb_s, baseline_mb_s, ratio (ours / baseline), ours_seconds."""
    import numpy as np

    from noisylabels.crc32c import crc32c, crc32c_bytewise

    data = np.random.default_rng(seed).integers(0, 256, size_mb * 10 ** 6, dtype=np.uint8).tobytes()
    small = data[:baseline_kb * 1000]
    if crc32c(small) != crc32c_bytewise(small):
        raise AssertionError("the two CRC-32C implementations disagree")
    ours = common.best_seconds(lambda: crc32c(data), repeats)
    baseline = common.best_seconds(lambda: crc32c_bytewise(small), repeats)
    ours_mb_s = size_mb / ours
    baseline_mb_s = baseline_kb / 1000 / baseline
    return {"ours_mb_s": ours_mb_s, "baseline_mb_s": baseline_mb_s, "ratio": common.ratio(ours_mb_s, baseline_mb_s),
            "ours_seconds": ours}


def report(results, size_mb, baseline_kb):
    common.print_table(
        "crc32c: ours on %d MB, baseline on %d KB (random bytes)" % (size_mb, baseline_kb),
        [("ours MB/s", results["ours_mb_s"], "MB/s"),
         ("ours seconds", results["ours_seconds"], "s"),
         ("baseline MB/s", results["baseline_mb_s"], "MB/s (byte-by-byte Python loop)"),
         ("speed ratio ours/baseline", results["ratio"], "x")])


def define_flags():
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Size preset; explicit size flags override it.")
    flags.DEFINE_integer("size_mb", None, "Megabytes (10^6 bytes) for the NumPy CRC (default preset: 10).")
    flags.DEFINE_integer("baseline_kb", None, "Kilobytes (10^3 bytes) for the byte loop (default preset: 256).")
    flags.DEFINE_integer("repeats", 5, "Timed runs of each; the fastest is reported.", lower_bound=1)


def main(argv):
    check_flag(len(argv) == 1, "preset", "unexpected arguments %s" % argv[1:])
    sizes = common.sizes_from_flags(PRESETS, ("size_mb", "baseline_kb"))
    check_flag(sizes["baseline_kb"] <= 1000 * sizes["size_mb"], "baseline_kb", "must not exceed --size_mb")
    results = run_benchmark(sizes["size_mb"], sizes["baseline_kb"], flags.FLAGS.repeats)
    report(results, sizes["size_mb"], sizes["baseline_kb"])


if __name__ == "__main__":
    define_flags()
    run_tool(main)
