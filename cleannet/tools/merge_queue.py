"""Merges a filled verification queue into the verified training data.

    python util/merge_queue.py --queue=review/queue.tsv --image_feature_list=tsv/all.tsv \\
        --verified_tsv=tsv/train.tsv --output_file=tsv/train_round2.tsv

--queue is util/report.py's queue.tsv with its vlabel column filled (1: label correct, 0:
label wrong), on the review page or in an editor. Each queued key's feature is looked up
in --image_feature_list (the all-samples TSV, key, [url,] class_name, feature); the output
is --verified_tsv's rows followed by one verified row per queued sample (key, [url,]
class_name, vlabel, feature), ready for `util/convert_data.py --split=train` and train.py.

Refused with one line naming the file and line: a vlabel other than 1, 0 or empty, a
duplicate key, an unfilled row (unless --skip_unfilled), an unknown key or another class
than the all-samples TSV's, a key --verified_tsv already holds. The output is written
atomically, never over an input, and over an existing file only with --overwrite.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from noisylabels.errors import check_flag
from noisylabels.flagutil import run_tool


def define_flags() -> None:
    flags.DEFINE_string("queue", None, "The filled queue.tsv (key, image_path, class_name, vlabel).", required=True)
    flags.DEFINE_string("image_feature_list", None, "The all-samples TSV (key, [url,] class_name, feature).",
                        required=True)
    flags.DEFINE_string("verified_tsv", None, "The verified TSV trained on so far (key, [url,] class_name, vlabel, "
                        "feature); its rows come first in the output.")
    flags.DEFINE_string("output_file", None, "The merged verified TSV.", required=True)
    flags.DEFINE_bool("skip_unfilled", False, "Leave out queue rows with an empty vlabel instead of refusing them.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output_file (never an input).")


def main(argv: Sequence[str]) -> None:
    from cleannet.review.merge import merge_queue

    F = flags.FLAGS
    check_flag(len(argv) == 1, "queue", "unexpected arguments %s" % argv[1:])
    result = merge_queue(F.queue, F.image_feature_list, F.output_file, verified_tsv=F.verified_tsv,
                         skip_unfilled=F.skip_unfilled, overwrite=F.overwrite)
    print("%s: %d verified keys kept, %d queued samples added (%d label correct, %d label wrong)%s"
          % (F.output_file, result.copied, result.added_correct + result.added_wrong, result.added_correct,
             result.added_wrong, ", %d unfilled rows left out" % result.skipped_unfilled
             if result.skipped_unfilled else ""))


def run() -> None:
    """Console entry point (cleannet-merge-queue)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
