"""Writes a review page of CleanNet's verdicts, and a verification queue.

    python util/report.py --predictions=pred.tsv --class_list=classes.txt \\
        --image_list=all_list.tsv --image_root=images --verified_list=train_list.tsv \\
        --output_dir=review/ --queue=100

OUTPUT_DIR/index.html opens from disk in any browser (no server, no network): a summary
(samples, classes, the decision and its calibration, the estimated share of wrong labels),
plots of the similarity and margin for labels judged correct and wrong, the most frequent
label -> suggested-class pairs, a per-class table (sortable), and per class its most
suspicious samples as thumbnails (thumbs/ beside the page) or, without images, as a table.

--queue=N also writes OUTPUT_DIR/queue.tsv: the N samples whose verification should help
the next training most (least certain verdicts first, spread over the classes, classes
without verification labels favoured; samples of --verified_list left out), in the
verified list layout key, image_path, class_name, vlabel with vlabel empty. Fill it on
the page (mark right / wrong, download) or in any editor, then merge it into the verified
training data with util/merge_queue.py (docs/pipeline.md).

--predictions is inference.py's output with --output_format=tsv or jsonl. The decision
that made its verdicts is read from --calibration (a calibration.json, relative decision)
or else recognised from the verdicts (threshold --val_sim_thres, or the relative
decision's margin cut). An existing non-empty OUTPUT_DIR is refused unless --overwrite.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from noisylabels.errors import check_flag
from noisylabels.flagutil import define_finite_float, run_tool

MAX_QUEUE = 100000


def define_flags() -> None:
    flags.DEFINE_string("predictions", None, "inference.py output with --output_format=tsv or jsonl.", required=True)
    flags.DEFINE_string("class_list", None, "The class list (one class name per line).", required=True)
    flags.DEFINE_string("output_dir", None, "Where index.html, thumbs/ and queue.tsv go.", required=True)
    flags.DEFINE_string("image_list", None, "Image list (key, image_path, class_name[, vlabel]) of the samples: "
                        "thumbnails. Without it, the predictions' url column is the image path.")
    flags.DEFINE_string("image_root", None, "Base of relative image paths (default: the image list's directory); "
                        "no path may leave it.")
    flags.DEFINE_string("verified_list", None, "The verified list or verified TSV the model was trained on: marks "
                        "the classes without verification labels and keeps its samples out of the queue.")
    flags.DEFINE_string("calibration", None, "calibration.json of inference.py --mode=calibrate, when the "
                        "predictions were made with --decision=relative.")
    define_finite_float("val_sim_thres", 0.1, "Threshold of the threshold decision (as inference.py's).",
                        lower_bound=-1.0, upper_bound=1.0)
    flags.DEFINE_integer("queue", 0, "Write queue.tsv with this many samples to verify (0: no queue).",
                         lower_bound=0, upper_bound=MAX_QUEUE)
    flags.DEFINE_integer("per_class", 8, "Most suspicious samples shown per class.", lower_bound=1, upper_bound=100)
    flags.DEFINE_bool("overwrite", False, "Write into a non-empty --output_dir (replaces index.html, queue.tsv, "
                      "thumbs/ only).")


def config_from_flags():
    from cleannet.review.build import ReportConfig

    F = flags.FLAGS
    return ReportConfig(predictions=F.predictions, class_list=F.class_list, output_dir=F.output_dir,
                        image_list=F.image_list, image_root=F.image_root, verified_list=F.verified_list,
                        calibration=F.calibration, val_sim_thres=F.val_sim_thres, queue=F.queue,
                        per_class=F.per_class, overwrite=F.overwrite)


def main(argv: Sequence[str]) -> None:
    from cleannet.review.build import build_report

    check_flag(len(argv) == 1, "predictions", "unexpected arguments %s" % argv[1:])
    result = build_report(config_from_flags())
    print("review page: %s (%d samples, %d shown, %d kB)" % (result.page_path, result.samples, result.shown,
                                                             result.page_bytes // 1000))
    if result.missing_images:
        print("%d images missing or unreadable (placeholders on the page)" % result.missing_images)
    if result.queue_path:
        print("verification queue: %s (%d samples)" % (result.queue_path, result.queued))


def run() -> None:
    """Console entry point (cleannet-report)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
