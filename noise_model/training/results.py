"""The --stage=all results table: each stage's final test figure beside the published one.

The published figures are the paper's (Xiao et al., CVPR 2015; docs/noise_model.md): the
CIFAR-10 protocol's accuracies (also shown for the digits demo, which follows that
protocol) and the Clothing1M ones.
"""

from typing import Dict, Mapping

# (stage, metric key, label, published value); the metric key is a test summary tag.
PUBLISHED = {
    "cifar10": [
        ("clean", "test/accuracy", "clean set only: test accuracy", 0.620),
        ("noisy_gt", "test/accuracy", "noisy labels as truth: test accuracy", 0.658),
        ("ntype", "test/accuracy", "noise-type net: noise-type accuracy", 0.689),
        ("joint", "test/accuracy", "joint model: test accuracy", 0.689),
    ],
    "clothing1m": [
        ("clean", "val/accuracy", "clean only: validation accuracy", 0.724),
        ("ntype", "test/accuracy", "noise-type net: noise-type accuracy", 0.641),
        ("joint", "val/accuracy", "joint stage 1: validation accuracy", 0.755),
        ("joint_stage2", "val/accuracy", "joint stage 2: validation accuracy", 0.773),
    ],
}
PUBLISHED["digits"] = PUBLISHED["cifar10"]  # the demo is compared with the CIFAR-10 figures

RESULTS_FILE = "results.txt"


def format_results_table(dataset: str, metrics_by_stage: Mapping[str, Dict[str, float]]) -> str:
    """The results table of a run: our figure beside the published one.

    Args:
      dataset: the data set the stages were trained on.
      metrics_by_stage: stage → metric key → value (the stages' final test metrics).

    Returns:
      The table as a multi-line string ("-" where a stage has no figure).
    """
    published_on = "Clothing1M" if dataset == "clothing1m" else "CIFAR-10"
    rows = [("run (%s)" % dataset, "ours", "published (%s)" % published_on)]
    for stage, key, label, value in PUBLISHED[dataset]:
        ours = metrics_by_stage.get(stage, {}).get(key)
        rows.append((label, "-" if ours is None else "%.3f" % ours, "%.3f" % value))
    width = max(len(row[0]) for row in rows)
    return "\n".join("%-*s  %6s  %s" % (width, a, b, c) for a, b, c in rows)
