"""The digits demo's four figures over several seeds: how much they move with the seed.

    python bench/digits_seeds.py                      # seeds 0, 1, 2 (about 2 min per seed on 2 cores)
    python bench/digits_seeds.py --seeds=0,1 --work_dir=runs/digits_seeds

For each seed N it prepares the digits data (noise_model.data.digits.prepare_digits: split,
Q, corruption and shuffle seeded with N, `--noise_level`) in WORK/seed_N/data, then runs
the documented demo command in a child process (a fresh TensorFlow per seed):

    python -m noise_model.train --dataset=digits --stage=all --seed=N
        --data_dir=WORK/seed_N/data --train_dir=WORK/seed_N/train

and reads each stage's final test figure from its final.json (the figures of the results
table: clean only, noisy labels as truth, noise-type net, joint model). It prints them per
seed with the training command's wall minutes, then the min / mean / max of each figure
over the seeds.

The figures are not bit-reproducible across machines: TensorFlow's CPU kernels (oneDNN)
differ by instruction set, so the same seed gives slightly different training runs on
different CPUs, and the ranges over seeds are the figures to compare. Without --work_dir
the runs go to a temporary directory that is removed afterwards; with it, the runs are kept
there and a rerun resumes them (a finished run is only read back, so its minutes are the
check's, not the training's). The child's log is WORK/seed_N/train.log.
"""

import os
import subprocess
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

from bench import common
from noisylabels.errors import InputError
from noisylabels.flagutil import define_finite_float, run_tool

DATASET = "digits"
SHORT_NAMES = {"clean": "clean only", "noisy_gt": "noisy as truth", "ntype": "noise type", "joint": "joint"}


def parse_seeds(text):
    """"0,1,2" → [0, 1, 2]; None unless the text is distinct non-negative integers."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        return None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        return None
    return seeds


def figure_rows():
    """(stage, metric key) of each figure of the digits results table, in its order."""
    from noise_model.training import results

    return [(stage, key) for stage, key, _, _ in results.PUBLISHED[DATASET]]


def check_prepared(data_dir, seed, noise_level):
    """Refuses data kept in --work_dir from a run with another seed or noise level."""
    from noise_model.data import datasets

    metadata = datasets.read_metadata(data_dir)
    for field, wanted in (("dataset", DATASET), ("seed", seed), ("noise_level", noise_level)):
        if metadata.get(field) != wanted:
            raise InputError("holds data prepared with %s %r, not %r: use another --work_dir"
                             % (field, metadata.get(field), wanted), path=data_dir, field="--work_dir")


def run_seed(seed_dir, seed, noise_level):
    """Prepares the data and runs every stage for one seed in seed_dir.

    Returns:
      (figures: stage → final test figure, wall seconds of the training command).
    Raises RuntimeError when the training command fails (with the end of its log).
    """
    from noise_model.training import stage_files
    from noise_model.data.digits import prepare_digits

    data_dir, train_dir = os.path.join(seed_dir, "data"), os.path.join(seed_dir, "train")
    if os.path.exists(os.path.join(data_dir, "metadata.json")):
        check_prepared(data_dir, seed, noise_level)
    else:
        prepare_digits(data_dir, noise_level=noise_level, seed=seed)
    argv = [sys.executable, "-m", "noise_model.train", "--dataset=%s" % DATASET, "--stage=all",
            "--seed=%d" % seed, "--data_dir=%s" % data_dir, "--train_dir=%s" % train_dir]
    env = dict(os.environ)
    env["PYTHONPATH"] = common.ROOT + os.pathsep + env.get("PYTHONPATH", "")
    log_path = os.path.join(seed_dir, "train.log")
    with common.Timer() as timer, open(log_path, "w") as log:
        returncode = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=common.ROOT)
    if returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            raise RuntimeError("seed %d: noise_model.train exited %d:\n%s" % (seed, returncode, log.read()[-2000:]))
    figures = {}
    for stage, key in figure_rows():
        final = stage_files.read_final(os.path.join(train_dir, stage))
        figures[stage] = final["metrics"][key]
    return figures, timer.seconds


def format_table(figures_by_seed, seconds_by_seed):
    """Plain text: one row per seed (four figures, minutes), then min / mean / max rows."""
    stages = [stage for stage, _ in figure_rows()]
    header = ["seed"] + [SHORT_NAMES[stage] for stage in stages] + ["minutes"]
    rows = [[str(seed)] + ["%.3f" % figures[stage] for stage in stages] + ["%.1f" % (seconds_by_seed[seed] / 60)]
            for seed, figures in figures_by_seed.items()]
    for name, reduce in (("min", min), ("mean", lambda v: sum(v) / len(v)), ("max", max)):
        rows.append([name] + ["%.3f" % reduce([f[stage] for f in figures_by_seed.values()]) for stage in stages]
                    + [""])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header] + rows)


def define_flags():
    flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds (each seeds the data preparation and training).")
    define_finite_float("noise_level", 0.5, "Off-diagonal mass of each column of Q, in [0, 1].",
                        lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_string("work_dir", None, "Keep the runs here (WORK/seed_N/{data,train}; a rerun resumes them); "
                        "default: a temporary directory, removed afterwards.")
    flags.register_validator("seeds", lambda text: parse_seeds(text) is not None,
                             message="expected distinct non-negative integers such as 0,1,2")


def main(argv):
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise InputError("unexpected arguments: %s" % " ".join(argv[1:]))
    seeds = parse_seeds(FLAGS.seeds)
    figures_by_seed, seconds_by_seed = {}, {}
    with common.temp_dir(keep=FLAGS.work_dir) as work_dir:
        for seed in seeds:
            seed_dir = os.path.join(work_dir, "seed_%d" % seed)
            figures_by_seed[seed], seconds_by_seed[seed] = run_seed(seed_dir, seed, FLAGS.noise_level)
            print("seed %d done in %.1f min" % (seed, seconds_by_seed[seed] / 60), flush=True)
    print("digits demo (--stage=all, noise level %g): final test figures per seed" % FLAGS.noise_level)
    print(format_table(figures_by_seed, seconds_by_seed))


if __name__ == "__main__":
    define_flags()
    run_tool(main)
