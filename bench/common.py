"""Shared helpers of the benchmarks: synthetic data writers, a timer, peak-RSS measurement.

This module imports only NumPy and the standard library (no TensorFlow), so the
conversion benchmark's child processes and the smoke tests stay light.

Synthetic data:
  - class names "class_000", "class_001", ...;
  - features are uniform in [0, 1) written with `digits` decimals ("0.123456"), i.e.
    non-negative like ResNet pool features (so embed_norm=log applies);
  - the TSV writers build each row's feature bytes with NumPy (no per-value Python
    formatting), so writing 20k × 2048 rows takes seconds.
"""

import contextlib
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Food-101N-sized setting (--preset=food101n): 101 classes, 2048-d ResNet-50 features,
# 32 references per class, about 310k samples.
FOOD101N = dict(num_classes=101, img_dim=2048, num_ref=32, num_samples=310000)


def class_names(num_classes):
    """["class_000", ...]: num_classes names."""
    return ["class_%03d" % i for i in range(num_classes)]


def write_class_list(path, num_classes):
    """Writes a class list (one name per line). Returns the names."""
    names = class_names(num_classes)
    with open(path, "w") as f:
        f.write("\n".join(names) + "\n")
    return names


def feature_bytes(values, digits=6):
    """Formats values in [0, 1), float [n, h], as n byte rows "0.ddd,0.ddd,...".

    Every value becomes "0." plus `digits` decimals (truncated), so rows have a fixed
    width and are built with array operations.

    Returns:
      uint8 [n, h * (digits + 3) - 1]: row i is the ASCII feature string of values[i].
    """
    values = np.asarray(values, dtype=np.float64)
    n, h = values.shape
    width = digits + 3  # "0." + digits + ","
    scaled = np.minimum((values * 10 ** digits).astype(np.int64), 10 ** digits - 1)
    out = np.empty((n, h, width), dtype=np.uint8)
    out[:, :, 0] = ord("0")
    out[:, :, 1] = ord(".")
    for d in range(digits):
        out[:, :, 2 + d] = ord("0") + (scaled // 10 ** (digits - 1 - d)) % 10
    out[:, :, width - 1] = ord(",")
    return out.reshape(n, h * width)[:, :-1]


def parse_written(values, digits=6):
    """The float values the TSV writers put in the file for `values` (truncated decimals)."""
    values = np.asarray(values, dtype=np.float64)
    scaled = np.minimum((values * 10 ** digits).astype(np.int64), 10 ** digits - 1)
    return scaled / 10 ** digits


def write_tsv(path, kind, num_rows, img_dim, num_classes, seed=0, digits=6, block_rows=2048):
    """Writes a synthetic CleanNet TSV and returns its size in bytes.

    Args:
      path: output file.
      kind: "all" (key, class_name, feature) or "verified" (key, class_name, vlabel,
        feature; vlabel 1, 0 or -1 with probabilities 0.6, 0.35, 0.05).
      num_rows: rows N; img_dim: features per row h; num_classes: C (classes drawn
        uniformly; rows are in random class order, so the `all` converter must group them).
      seed: NumPy seed.
      digits: decimals per value (row width h * (digits + 3) bytes).
      block_rows: rows generated per NumPy block (bounds the writer's memory).
    """
    if kind not in ("all", "verified"):
        raise ValueError("kind must be 'all' or 'verified', got %r" % kind)
    rng = np.random.default_rng(seed)
    names = [n.encode() for n in class_names(num_classes)]
    with open(path, "wb") as f:
        for start in range(0, num_rows, block_rows):
            n = min(block_rows, num_rows - start)
            rows = feature_bytes(rng.random((n, img_dim)), digits)
            classes = rng.integers(0, num_classes, n)
            vlabels = rng.choice([b"1", b"0", b"-1"], size=n, p=[0.6, 0.35, 0.05])
            parts = []
            for i in range(n):
                meta = b"key_%d\t%s\t" % (start + i, names[classes[i]])
                if kind == "verified":
                    meta += vlabels[i] + b"\t"
                parts.append(meta + rows[i].tobytes() + b"\n")
            f.write(b"".join(parts))
    return os.path.getsize(path)


def write_cleannet_tables(data_dir, num_train, num_val, num_all, num_classes, img_dim, num_ref,
                          seed=0):
    """Writes train.npy, val.npy, all.npy and ref.npy in the layouts of cleannet/datafiles.py.

    train/val: float32 [N, h+2] = feature, class id, vlabel (0/1); all: float32 [N, h+1]
    grouped by class id; ref: float32 [C, R, h]. Features uniform in [0, 1).
    """
    from noisylabels.fileio import save_npy  # noqa: E402  (repository root on sys.path)

    rng = np.random.default_rng(seed)
    os.makedirs(data_dir, exist_ok=True)
    for split, n in (("train", num_train), ("val", num_val)):
        table = np.empty((n, img_dim + 2), np.float32)
        table[:, :img_dim] = rng.random((n, img_dim), dtype=np.float32)
        table[:, img_dim] = rng.integers(0, num_classes, n)
        table[:, img_dim + 1] = rng.integers(0, 2, n)
        save_npy(os.path.join(data_dir, split + ".npy"), table)
    table = np.empty((num_all, img_dim + 1), np.float32)
    table[:, :img_dim] = rng.random((num_all, img_dim), dtype=np.float32)
    table[:, img_dim] = np.sort(rng.integers(0, num_classes, num_all))
    save_npy(os.path.join(data_dir, "all.npy"), table)
    save_npy(os.path.join(data_dir, "ref.npy"),
             rng.random((num_classes, num_ref, img_dim), dtype=np.float32))


@contextlib.contextmanager
def temp_dir(keep=None):
    """A temporary directory (removed afterwards), or `keep` if given (left in place)."""
    if keep:
        os.makedirs(keep, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="cleannet_bench_") as path:
        yield path


class Timer:
    """`with Timer() as t: ...` then `t.seconds` (wall clock, time.perf_counter)."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = None
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def step_seconds(fn, steps, warmup=1):
    """Calls fn() `warmup` times untimed, then `steps` times; returns each call's seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn, steps, warmup=1):
    """Median seconds per call (robust to other processes stealing the CPU now and then)."""
    return float(np.median(step_seconds(fn, steps, warmup)))


def interleaved_median_seconds(fns, steps, warmup=1, rounds=5):
    """Median seconds per call of each of several functions, timed in alternation.

    fns: dict name -> zero-argument function. Each is called `warmup` times untimed, then
    the functions take turns, `rounds` times, each running ceil(steps / rounds) timed
    calls, so that every one of them sees the same share of the machine's load.

    Returns:
      dict name -> median seconds per call.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    per_round = max(1, -(-steps // rounds))
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += step_seconds(fn, per_round, warmup=0)
    return {name: float(np.median(t)) for name, t in times.items()}


def best_seconds(fn, repeats, warmup=1):
    """Fastest of `repeats` timed calls, for long calls on a shared machine."""
    return min(step_seconds(fn, repeats, warmup))


def peak_rss_mb():
    """This process's peak resident set size so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# Runs a Python script (or `-c CODE`) and, at exit, prints the process's own peak RSS
# (VmHWM of /proc/self/status: the high-water mark of the memory map created by exec).
_PEAK_RSS_WRAPPER = r"""
import atexit, runpy, sys
def _report_peak_rss():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    sys.stderr.write("\nBENCH_PEAK_RSS_KB=%s\n" % line.split()[1])
                    sys.stderr.flush()
    except OSError:
        pass
atexit.register(_report_peak_rss)
target = sys.argv[1]
if target == "-c":
    code = sys.argv[2]
    sys.argv = ["-c"] + sys.argv[3:]
    exec(compile(code, "<bench child>", "exec"), {"__name__": "__main__"})
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(target, run_name="__main__")
"""


def run_python_child(target, args, env=None):
    """Runs `python TARGET ARGS...` (TARGET a script path, or "-c" then the code as the
    first of args) in a child process and measures it alone.

    Peak RSS: the child reports the VmHWM of its own memory map at exit. (The brief's
    `getrusage(RUSAGE_CHILDREN)`, and even os.wait4's per-child rusage, are not used for
    the figure: Linux carries the parent's RSS high-water mark into a child's ru_maxrss
    across fork/vfork + exec, so every child would read at least the parent's peak.)
    ru_maxrss from os.wait4 is kept as `ru_maxrss_mb` for reference.

    Returns:
      dict: seconds (wall clock, including interpreter start-up and imports),
      cpu_seconds (the child's user + system CPU time, all its threads), peak_rss_mb (MiB; the wait4 value when /proc is missing), ru_maxrss_mb,
      returncode, output (stdout + stderr text).
    """
    env = dict(os.environ if env is None else env)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-c", _PEAK_RSS_WRAPPER, target] + list(args)
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    ru_maxrss_mb = usage.ru_maxrss / 1024.0
    reported = re.findall(r"BENCH_PEAK_RSS_KB=(\d+)", output)
    peak = int(reported[-1]) / 1024.0 if reported else ru_maxrss_mb
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak,
            "ru_maxrss_mb": ru_maxrss_mb, "returncode": process.returncode, "output": output}


def ratio(value, baseline):
    """value / baseline (inf when the baseline is 0)."""
    return value / baseline if baseline else float("inf")


def _format_number(value):
    """4 significant digits (no exponent below 1e6): 0.006983, 2.232, 99.13, 29320."""
    if abs(value) >= 1000 and abs(value) < 1e6:
        return "%.0f" % value
    return "%.4g" % value


def print_table(title, rows):
    """Prints `title` and rows of (name, value, unit) as aligned text."""
    print(title)
    width = max(len(name) for name, _, _ in rows)
    for name, value, unit in rows:
        text = _format_number(value) if isinstance(value, float) else str(value)
        print("  %-*s  %12s %s" % (width, name, text, unit))
    sys.stdout.flush()


def sizes_from_flags(presets, names):
    """The preset's sizes (dict) for --preset, overridden by the size flags given (not None);
    InputError unless each is positive."""
    from absl import flags
    from noisylabels.errors import check_flag

    FLAGS = flags.FLAGS
    sizes = dict(presets[FLAGS.preset])
    for name in names:
        if getattr(FLAGS, name) is not None:
            sizes[name] = getattr(FLAGS, name)
        check_flag(sizes[name] > 0, name, "must be positive, got %d" % sizes[name])
    return sizes

