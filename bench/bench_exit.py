"""Benchmark: seconds from train.py's last line of output to the end of its process.

    python bench/bench_exit.py                 # 2 runs each, 20 classes, 256 dims, 40 steps

Trains a small CleanNet on synthetic tables in child processes, twice each way:
  ours: `python train.py ...` (ends without the interpreter's teardown once training
    returned, see util/process_exit.py);
  baseline: the same train.main run by `app.run(cli_main(main))`, i.e. the usual
    interpreter exit, as before.
For each run, the child's stderr is read line by line as it comes, and the time from the
last line (train.py's "Finished at step ...") to the end of the process is measured.
Prints the median of each, the ratio baseline / ours, and the whole run's wall time.
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

# train.main run the usual way (no teardown skipped): `python -c BASELINE_CODE FLAGS...`.
BASELINE_CODE = r"""
import sys
sys.argv[0] = "train.py"
from cleannet.tools import train
from absl import app
from noisylabels.errors import cli_main
from noisylabels.flagutil import parse_flags
train.define_flags()
app.run(cli_main(train.main), flags_parser=parse_flags)
"""


def time_to_exit(argv, env):
    """Runs argv; returns (seconds from the last stderr line to the process end, wall seconds,
    the last line, the return code)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=common.ROOT)
    last_time, last_line = start, ""
    for line in process.stderr:
        if line.strip():
            last_time, last_line = time.perf_counter(), line.decode("utf-8", "replace").rstrip()
    process.wait()
    end = time.perf_counter()
    return end - last_time, end - start, last_line, process.returncode


def run_benchmark(num_classes=20, img_dim=256, num_ref=8, num_samples=500, steps=40, repeats=2, work_dir=None):
    """Returns dict: ours / baseline -> list of (exit seconds, wall seconds); medians and ratio."""
    import numpy as np

    env = dict(os.environ)
    env["PYTHONPATH"] = common.ROOT + os.pathsep + env.get("PYTHONPATH", "")
    results = {"ours": [], "baseline": []}
    with common.temp_dir(work_dir) as tmp:
        data_dir = os.path.join(tmp, "data")
        common.write_cleannet_tables(data_dir, num_samples, max(64, num_samples // 10), num_samples, num_classes,
                                     img_dim, num_ref)
        commands = {"ours": [sys.executable, os.path.join(common.ROOT, "train.py")],
                    "baseline": [sys.executable, "-c", BASELINE_CODE]}
        for run in range(repeats):
            for name, command in commands.items():
                run_dir = os.path.join(tmp, "%s_%d" % (name, run))
                flags_ = ["--data_dir=" + data_dir, "--checkpoint_dir=" + os.path.join(run_dir, "ckpt"),
                          "--log_dir=" + os.path.join(run_dir, "log"), "--img_dim=%d" % img_dim,
                          "--num_ref=%d" % num_ref, "--n_step=%d" % steps, "--val_interval=%d" % steps,
                          "--log_interval=%d" % steps]
                exit_s, wall_s, last_line, code = time_to_exit(command + flags_, env)
                if code != 0 or "Finished at step" not in last_line:
                    raise RuntimeError("%s: train.py failed (status %d), last line: %s" % (name, code, last_line))
                results[name].append((exit_s, wall_s))
    for name in ("ours", "baseline"):
        results[name + "_exit_s"] = float(np.median([e for e, _ in results[name]]))
        results[name + "_wall_s"] = float(np.median([w for _, w in results[name]]))
    results["ratio"] = common.ratio(results["baseline_exit_s"], results["ours_exit_s"])
    return results


def report(results):
    common.print_table("train.py: last line of output to process end (median of %d runs)" % len(results["ours"]),
                       [("ours (teardown skipped)", results["ours_exit_s"], "s"),
                        ("baseline (usual interpreter exit)", results["baseline_exit_s"], "s"),
                        ("ratio baseline/ours", results["ratio"], "x"),
                        ("ours, whole run", results["ours_wall_s"], "s"),
                        ("baseline, whole run", results["baseline_wall_s"], "s")])


def define_flags():
    flags.DEFINE_integer("repeats", 2, "Runs of each variant (alternated).", lower_bound=1)
    flags.DEFINE_integer("steps", 40, "Training steps per run.", lower_bound=1)
    flags.DEFINE_string("work_dir", None, "Keep the files here (default: a temporary directory).")


def main(argv):
    check_flag(len(argv) == 1, "repeats", "unexpected arguments %s" % argv[1:])
    FLAGS = flags.FLAGS
    report(run_benchmark(steps=FLAGS.steps, repeats=FLAGS.repeats, work_dir=FLAGS.work_dir))


if __name__ == "__main__":
    define_flags()
    run_tool(main)
