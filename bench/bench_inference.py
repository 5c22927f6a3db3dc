"""Benchmark: CleanNet scoring samples/s, class-embedding cache against per-sample encoding.

    python bench/bench_inference.py                     # default: 20k samples, 101 classes, 2048 dims
    python bench/bench_inference.py --preset=medium     # 100k samples, TSV of 20k rows
    python bench/bench_inference.py --preset=food101n   # 310k samples, TSV of 310k rows (5.7 GB)

1. In memory, float32 [n, 2048] features with random class ids, a random-weight CleanNet:
   - ours: `cleannet.scoring.ClassEmbeddingScorer.score` (each class's reference set
     encoded once, then query encoder + gather), batch `--batch_size`;
   - baseline: `cleannet.scoring.score_per_sample` (every sample's [R, h] reference set
     gathered and encoded, as the original), in batches of `--baseline_batch_size` on the
     first `--baseline_samples` samples (it is ~R times slower and needs B·R·h floats).
   Prints samples/s of both (fastest of 3 passes, 2 for the baseline: the figure least
   disturbed by other processes) and the ratio. The target is ≥ 50,000 samples/s for ours
   with 2 cores. The cache fill (C·R rows through the reference encoder) is timed apart.
2. The TSV path of inference.py: `cleannet.tsv_reader.iter_tsv_chunks` + the scorer on a
   synthetic all-samples TSV, in MB/s of TSV, against parsing only (the same reader, no
   scoring): the ratio shows how much scoring costs on top of parsing.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

from bench import common
from noisylabels.errors import check_flag
from noisylabels.flagutil import run_tool

PRESETS = {
    "default": dict(num_samples=20000, num_classes=101, img_dim=2048, num_ref=32, tsv_rows=2000,
                    baseline_samples=1024),
    "medium": dict(num_samples=100000, num_classes=101, img_dim=2048, num_ref=32, tsv_rows=20000,
                   baseline_samples=4096),
    "food101n": dict(num_samples=common.FOOD101N["num_samples"], num_classes=101, img_dim=2048, num_ref=32,
                     tsv_rows=common.FOOD101N["num_samples"], baseline_samples=8192),
}


def make_model_and_reference(num_classes, img_dim, num_ref, seed=0):
    import keras
    import numpy as np
    from cleannet.model import CleanNet

    keras.utils.set_random_seed(seed)
    model = CleanNet(num_ref, img_dim, "log").build_variables()
    reference = np.random.default_rng(seed).random((num_classes, num_ref, img_dim), dtype=np.float32)
    return model, reference


def time_scoring(model, reference, features, class_ids, batch_size, baseline_samples, baseline_batch_size,
                 repeats=3):
    """samples/s (best of `repeats` runs; baseline best of 2) of the cached scorer and of
    score_per_sample; cache fill seconds."""
    import numpy as np
    from cleannet.numpy_model import NumpyCleanNet
    from cleannet.scoring import ClassEmbeddingScorer, score_per_sample

    with common.Timer() as fill:
        scorer = ClassEmbeddingScorer(NumpyCleanNet.from_keras(model), reference)
    scorer.score(features[:batch_size], class_ids[:batch_size], batch_size)  # trace
    n = len(features)
    ours = n / common.best_seconds(lambda: scorer.score(features, class_ids, batch_size), repeats, warmup=0)

    m = min(baseline_samples, n)

    def baseline():
        return np.concatenate([score_per_sample(model, features[i:min(i + baseline_batch_size, m)],
                                                class_ids[i:min(i + baseline_batch_size, m)], reference)
                               for i in range(0, m, baseline_batch_size)])

    base = m / common.best_seconds(baseline, 2, warmup=1)
    # Same answers both ways (a benchmark that measured a wrong scorer would be worthless).
    diff = float(np.max(np.abs(baseline() - scorer.score(features[:m], class_ids[:m], batch_size))))
    return {"ours": ours, "baseline": base, "cache_fill_s": fill.seconds, "max_abs_diff": diff,
            "baseline_samples": m}


def time_tsv(model, reference, tsv_path, num_classes, batch_size, chunk_rows=4096, repeats=2):
    """MB/s of TSV (best of `repeats` passes): parse + score (inference.py's loop) and parse only."""
    from cleannet.numpy_model import NumpyCleanNet
    from cleannet.scoring import ClassEmbeddingScorer
    from cleannet import tsv_reader

    class_to_id = tsv_reader.make_class_to_id(common.class_names(num_classes))
    scorer = ClassEmbeddingScorer(NumpyCleanNet.from_keras(model), reference)
    scorer.score(reference[:1, 0], [0], batch_size)  # trace outside the timing
    mb = os.path.getsize(tsv_path) / 1e6

    def parse_only():
        return sum(len(c) for c in tsv_reader.iter_tsv_chunks(tsv_path, "all", class_to_id, chunk_rows=chunk_rows))

    def parse_and_score():
        return sum(len(scorer.score(c.features, c.class_ids, batch_size))
                   for c in tsv_reader.iter_tsv_chunks(tsv_path, "all", class_to_id, chunk_rows=chunk_rows))

    parse = mb / common.best_seconds(parse_only, repeats, warmup=0)
    scored = mb / common.best_seconds(parse_and_score, repeats, warmup=0)
    return {"tsv_mb": mb, "parse_mb_s": parse, "parse_score_mb_s": scored}


def run_benchmark(num_samples, num_classes, img_dim, num_ref, tsv_rows, baseline_samples, batch_size=4096,
                  baseline_batch_size=256, work_dir=None):
    import numpy as np

    model, reference = make_model_and_reference(num_classes, img_dim, num_ref)
    rng = np.random.default_rng(1)
    features = rng.random((num_samples, img_dim), dtype=np.float32)
    class_ids = rng.integers(0, num_classes, num_samples).astype(np.int32)
    results = time_scoring(model, reference, features, class_ids, batch_size, baseline_samples,
                           baseline_batch_size)
    results["ratio"] = common.ratio(results["ours"], results["baseline"])
    del features
    if tsv_rows > 0:
        with common.temp_dir(work_dir) as tmp:
            tsv_path = os.path.join(tmp, "input.tsv")
            common.write_tsv(tsv_path, "all", tsv_rows, img_dim, num_classes, seed=2)
            results.update(time_tsv(model, reference, tsv_path, num_classes, batch_size))
            os.remove(tsv_path)
        results["tsv_ratio"] = common.ratio(results["parse_score_mb_s"], results["parse_mb_s"])
    results["peak_rss_mb"] = common.peak_rss_mb()
    return results


def report(results, sizes):
    rows = [("ours: ClassEmbeddingScorer.score", results["ours"], "samples/s"),
            ("baseline: score_per_sample (%d samples)" % results["baseline_samples"], results["baseline"],
             "samples/s"),
            ("ratio ours/baseline", results["ratio"], "x"),
            ("cache fill (%d classes)" % sizes["num_classes"], results["cache_fill_s"], "s"),
            ("max |ours - baseline| similarity", "%.2e" % results["max_abs_diff"], "")]
    if "tsv_mb" in results:
        rows += [("TSV parse + score (%.1f MB)" % results["tsv_mb"], results["parse_score_mb_s"], "MB/s"),
                 ("TSV parse only", results["parse_mb_s"], "MB/s"),
                 ("ratio parse+score / parse only", results["tsv_ratio"], "x")]
    rows.append(("peak RSS (this process)", results["peak_rss_mb"], "MiB"))
    common.print_table("inference: %d samples, %d classes, %d dims, %d refs; TSV %d rows"
                       % (sizes["num_samples"], sizes["num_classes"], sizes["img_dim"], sizes["num_ref"],
                          sizes["tsv_rows"]), rows)


def define_flags():
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Size preset; explicit size flags override it.")
    flags.DEFINE_integer("num_samples", None, "In-memory samples scored by ours.")
    flags.DEFINE_integer("num_classes", None, "Classes C.")
    flags.DEFINE_integer("img_dim", None, "Feature dimension h.")
    flags.DEFINE_integer("num_ref", None, "References per class R.")
    flags.DEFINE_integer("tsv_rows", None, "Rows of the TSV for the TSV path (0: skip it).")
    flags.DEFINE_integer("baseline_samples", None, "Samples scored by the per-sample baseline.")
    flags.DEFINE_integer("batch_size", 4096, "Batch of the cached scorer.")
    flags.DEFINE_integer("baseline_batch_size", 256, "Batch of the per-sample baseline.")
    flags.DEFINE_string("work_dir", None, "Keep the TSV here (default: a temporary directory).")


def main(argv):
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "preset", "unexpected arguments %s" % argv[1:])
    names = ["num_samples", "num_classes", "img_dim", "num_ref", "baseline_samples"]
    if FLAGS.tsv_rows != 0:  # 0 skips the TSV part
        names.append("tsv_rows")
    sizes = common.sizes_from_flags(PRESETS, names)
    if FLAGS.tsv_rows == 0:
        sizes["tsv_rows"] = 0
    check_flag(FLAGS.batch_size > 0, "batch_size", "must be positive")
    check_flag(FLAGS.baseline_batch_size > 0, "baseline_batch_size", "must be positive")
    results = run_benchmark(batch_size=FLAGS.batch_size, baseline_batch_size=FLAGS.baseline_batch_size,
                            work_dir=FLAGS.work_dir, **sizes)
    report(results, sizes)


if __name__ == "__main__":
    define_flags()
    run_tool(main)
