"""Writes the cleaned image list from CleanNet's verdicts: the list a classifier trains on next.

    python util/make_cleaned_list.py --image_list=all_list.tsv --predictions=pred.tsv \\
        --keep=hard --output_file=cleaned_list.tsv      # + cleaned_list.tsv.summary.tsv

Inputs:
  --image_list   the image list the features were extracted from (util/image_list.py):
                 key, image_path, class_name[, vlabel], tab-separated.
  --predictions  inference.py's output for those samples with --output_format=tsv (a header
                 line; the columns key, class_name, similarity and verdict are used, found by
                 their header names; other columns are ignored) or --output_format=jsonl (one
                 object per line with those fields). Joined to the list by key: a list key
                 without a prediction, a prediction without a list row, a duplicate key or a
                 class that differs is an error naming the file and line.

Output, in the list's layout and order (written atomically):
  --keep=hard   the rows whose verdict is 1 (the label judged correct by the decision
                inference.py used, e.g. similarity >= --val_sim_thres).
  --keep=soft   every row, with a last column weight = max(0, similarity) (the paper's soft
                sample weight, 9 significant digits).
A summary per class (class_name, kept, dropped; sorted by class name) goes to
--summary_file (default OUTPUT.summary.tsv) and to stdout. kept counts the rows that take
part in training: verdict 1 (hard), weight > 0 (soft); dropped the others.
"""

from __future__ import annotations

import os


import collections
import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence

from absl import flags

from cleannet import image_list
from noisylabels.errors import InputError, check_flag
from noisylabels.flagutil import run_tool

KEEP_MODES = ("hard", "soft")
PREDICTION_FIELDS = ("key", "class_name", "similarity", "verdict")


@dataclasses.dataclass
class Prediction:
    """CleanNet's result for one sample: where it is, its class, cos similarity, verdict 0/1."""

    line: int
    class_name: str
    similarity: float
    verdict: int


def _prediction(values, path, line):
    """A Prediction from {field: raw value}; InputError naming the line and field."""
    for name in PREDICTION_FIELDS:
        if values.get(name) in (None, ""):
            raise InputError("missing value", path=path, line=line, field=name)
    try:
        similarity = float(values["similarity"])
    except (TypeError, ValueError):
        raise InputError("not a number: %r" % values["similarity"], path=path, line=line, field="similarity") from None
    if not math.isfinite(similarity):
        raise InputError("not a finite number", path=path, line=line, field="similarity")
    if str(values["verdict"]) not in ("0", "1"):
        raise InputError("expected 0 or 1, found %r" % values["verdict"], path=path, line=line, field="verdict")
    return Prediction(line, str(values["class_name"]), similarity, int(values["verdict"]))


def _iter_prediction_values(path):
    """Yields (line, {field: value}) from a tsv (with header) or jsonl predictions file."""
    from noisylabels.fileio import iter_text_lines

    header = jsonl = None
    for line, text in iter_text_lines(path, field="--predictions"):  # the shared line-length bound
        if not text.strip():
            continue
        jsonl = text.startswith("{") if jsonl is None else jsonl  # the first line decides
        if jsonl:
            try:
                values = json.loads(text)
            except ValueError as err:
                raise InputError("not a JSON object (%s)" % err, path=path, line=line) from None
            yield line, values if isinstance(values, dict) else {}
        elif header is None:
            header = text.split("\t")
            missing = [name for name in PREDICTION_FIELDS if name not in header]
            if missing:
                raise InputError("header has no column %s: expected inference.py --output_format=tsv "
                                 "(or jsonl) output" % ", ".join(missing), path=path, line=line)
        else:
            fields = text.split("\t")
            if len(fields) != len(header):
                raise InputError("%d columns, the header has %d" % (len(fields), len(header)),
                                 path=path, line=line)
            yield line, dict(zip(header, fields))


def read_predictions(path: str) -> dict[str, Prediction]:
    """{key: Prediction} from inference.py's tsv or jsonl output (module docstring)."""
    table = {}
    for line, values in _iter_prediction_values(path):
        prediction = _prediction(values, path, line)
        key = str(values["key"])
        if key in table:
            raise InputError("duplicate key %r (first on line %d)" % (key, table[key].line), path=path, line=line,
                             field="key")
        table[key] = prediction
    if not table:
        raise InputError("no predictions", path=path)
    return table


def iter_joined(list_path: str, predictions_path: str,
                predictions: Mapping[str, Prediction]) -> Iterator[tuple[image_list.ListRow, Prediction]]:
    """Yields (ListRow, Prediction) for every row of the list, in order; checks the join.

    Raises:
      InputError: a duplicate list key, a key without prediction, a class mismatch (naming
        the list line), or a prediction whose key is not in the list (naming its line).
    """
    first_line = {}
    for row in image_list.iter_list_rows(list_path):
        if row.key in first_line:
            raise InputError("duplicate key %r (first on line %d)" % (row.key, first_line[row.key]),
                             path=list_path, line=row.line, field="key")
        first_line[row.key] = row.line
        prediction = predictions.get(row.key)
        if prediction is None:
            raise InputError("no prediction for key %r in %s" % (row.key, predictions_path), path=list_path,
                             line=row.line, field="key")
        if prediction.class_name != row.class_name:
            raise InputError("class %r here but %r in %s:%d" % (row.class_name, prediction.class_name,
                                                                 predictions_path, prediction.line),
                             path=list_path, line=row.line, field="class_name")
        yield row, prediction
    unused = [p.line for key, p in predictions.items() if key not in first_line]
    if unused:
        raise InputError("%d predictions have no row in %s, the first on this line" % (len(unused), list_path),
                         path=predictions_path, line=min(unused), field="key")


def make_cleaned_list(image_list_path: str, predictions_path: str, output_file: str, keep: str = "hard",
                      summary_file: str | None = None, overwrite: bool = False) -> dict[str, tuple[int, int]]:
    """Writes the cleaned list and the per-class summary (module docstring).

    Args: as the flags of the same names; keep is one of KEEP_MODES (--keep checks it).

    Returns:
      {class_name: (kept, dropped)}.
    """
    from noisylabels.strict_numbers import format_float32
    from noisylabels.fileio import atomic_open

    summary_file = summary_file or output_file + ".summary.tsv"
    _check_output_paths([image_list_path, predictions_path], [output_file, summary_file], overwrite)
    predictions = read_predictions(predictions_path)
    counts = collections.defaultdict(lambda: [0, 0])
    with atomic_open(output_file, "w", encoding="utf-8", newline="\n") as out, \
            atomic_open(summary_file, "w", encoding="utf-8", newline="\n") as summary:
        for row, prediction in iter_joined(image_list_path, predictions_path, predictions):
            weight = max(0.0, prediction.similarity)
            kept = prediction.verdict == 1 if keep == "hard" else weight > 0
            counts[row.class_name][0 if kept else 1] += 1
            if keep == "soft":
                out.write("\t".join(row.fields + [format_float32(weight)]) + "\n")
            elif kept:
                out.write("\t".join(row.fields) + "\n")
        summary.write(summary_table(counts).to_csv(sep="\t", index=False, lineterminator="\n"))
    return {name: tuple(counts[name]) for name in sorted(counts)}


def summary_table(counts: Mapping[str, Sequence[int]]) -> "pandas.DataFrame":
    """The per-class summary: columns class_name, kept, dropped; one row per class, by name."""
    import pandas as pd

    rows = [(name, *counts[name]) for name in sorted(counts)]
    return pd.DataFrame(rows, columns=["class_name", "kept", "dropped"])


def _check_output_paths(inputs, outputs, overwrite):
    """Outputs must not be inputs or each other (symbolic and hard links included:
    fileio.refuse_output_equal_to_inputs); existing outputs need --overwrite."""
    from noisylabels.fileio import refuse_output_equal_to_inputs

    refuse_output_equal_to_inputs(dict(zip(("output_file", "summary_file"), outputs)),
                                  zip(("--image_list", "--predictions"), inputs))
    for flag, path in zip(("output_file", "summary_file"), outputs):
        check_flag(overwrite or not os.path.exists(path), flag, "%s exists; pass --overwrite to replace it" % path)


def print_summary(counts: Mapping[str, tuple[int, int]], keep: str) -> None:
    """Prints the per-class table and the totals to stdout."""
    width = max([len("class")] + [len(name) for name in counts])
    print("%-*s  %8s  %8s   (--keep=%s)" % (width, "class", "kept", "dropped", keep))
    for name, (kept, dropped) in counts.items():
        print("%-*s  %8d  %8d" % (width, name, kept, dropped))
    print("%-*s  %8d  %8d" % (width, "total", sum(k for k, _ in counts.values()),
                              sum(d for _, d in counts.values())))


def define_flags() -> None:
    flags.DEFINE_string("image_list", None, "Image list: key, image_path, class_name[, vlabel].", required=True)
    flags.DEFINE_string("predictions", None, "inference.py output with --output_format=tsv or jsonl.",
                        required=True)
    flags.DEFINE_string("output_file", None, "The cleaned list (same layout as --image_list).", required=True)
    flags.DEFINE_enum("keep", "hard", list(KEEP_MODES), "hard: the rows with verdict 1; soft: every row with "
                      "the weight max(0, similarity) appended.")
    flags.DEFINE_string("summary_file", None, "Per-class summary TSV; default: OUTPUT_FILE.summary.tsv.")
    flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def main(argv: Sequence[str]) -> None:
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "image_list", "unexpected arguments %s" % argv[1:])
    counts = make_cleaned_list(FLAGS.image_list, FLAGS.predictions, FLAGS.output_file, keep=FLAGS.keep,
                               summary_file=FLAGS.summary_file, overwrite=FLAGS.overwrite)
    print_summary(counts, FLAGS.keep)


def run() -> None:
    """Console entry point (cleannet-make-cleaned-list)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
