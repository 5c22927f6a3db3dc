"""Drops the verification labels of held-out classes from a verified TSV (docs/originals.md#cleannet-files-and-formats).

    python util/heldout_train_data.py --heldout_class_list=keep.tsv \\
        --input_file=train.tsv --output_file=train_heldout.tsv

--heldout_class_list is a TSV of `class_name <TAB> keep` lines, keep 1 or 0. Every row of
the verified TSV (key, [url,] class_name, vlabel, feature) whose class has keep 0 is
dropped; every other line is copied byte for byte (line ends included). This makes the
transfer-learning setting of the paper: verification labels for only part of the
classes. A row whose class is not in the keep list is an error (the original crashed on
it), as is an empty input. The output is written atomically.
"""

from __future__ import annotations

import os


import dataclasses
from collections.abc import Sequence

from absl import flags
from absl import logging

from noisylabels import fileio
from cleannet import tsv_reader
from noisylabels.errors import InputError, check_flag
from noisylabels.flagutil import run_tool


@dataclasses.dataclass
class HeldoutResult:
    """Rows kept and dropped, per class name (str -> int)."""

    kept: int
    dropped: int
    dropped_per_class: dict[str, int]


def read_keep_list(path: str | os.PathLike) -> dict[bytes, bool]:
    """Reads `class_name <TAB> keep` lines into {class name (bytes): keep (bool)}.

    CRLF line ends and trailing empty lines are allowed; keep must be 0 or 1; a class
    may appear only once.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except OSError as err:
        raise InputError("cannot read (%s)" % (err.strerror or err), path=path) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError("empty class list (no rows)", path=path)
    keep, first_line = {}, {}
    for line_no, line in enumerate(lines, 1):
        fields = line.split(b"\t")
        if len(fields) != 2:
            raise InputError("expected 2 tab-separated columns (class_name, keep), found %d"
                             % len(fields), path=path, line=line_no)
        name, value = fields
        value = value.strip()
        if value not in (b"0", b"1"):
            raise InputError("expected 0 or 1, found %r" % value.decode("utf-8", "replace"),
                             path=path, line=line_no, field="keep")
        if name in first_line:
            raise InputError("duplicate class %r (first on line %d)"
                             % (name.decode("utf-8", "replace"), first_line[name]),
                             path=path, line=line_no, field="class_name")
        first_line[name] = line_no
        keep[name] = value == b"1"
    return keep


def filter_heldout(heldout_class_list: str | os.PathLike, input_file: str | os.PathLike,
                   output_file: str | os.PathLike) -> HeldoutResult:
    """Copies input_file to output_file without the rows of keep-0 classes.

    Args:
      heldout_class_list: TSV of class_name, keep.
      input_file: a verified TSV (4 or 5 columns per row).
      output_file: where the kept lines go (atomically).

    Returns:
      HeldoutResult.
    """
    keep = read_keep_list(heldout_class_list)
    input_file = os.fspath(input_file)
    kept = dropped = 0
    dropped_per_class = {}
    try:
        source = open(input_file, "rb")
    except FileNotFoundError:
        raise InputError("file not found", path=input_file) from None
    except OSError as err:
        raise InputError("cannot read (%s)" % (err.strerror or err), path=input_file) from None
    with source, fileio.atomic_open(output_file, "wb") as out:
        max_bytes = tsv_reader.max_line_bytes(None)
        for line_no, raw in enumerate(fileio.iter_raw_lines(source, input_file, max_bytes), 1):
            line = raw.rstrip(b"\r\n")
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                out.write(raw)
                continue
            meta, tab, _ = line.rpartition(b"\t")
            fields = meta.split(b"\t") if tab else []
            if len(fields) + 1 not in (4, 5):
                raise InputError("expected 4 or 5 tab-separated columns, found %d"
                                 % (len(fields) + 1), path=input_file, line=line_no)
            name = fields[-2]  # key, [url,] class_name, vlabel
            class_keep = keep.get(name)
            if class_keep is None:
                raise InputError("class %r is not in %s" % (name.decode("utf-8", "replace"),
                                                            heldout_class_list),
                                 path=input_file, line=line_no, field="class_name")
            if class_keep:
                out.write(raw)
                kept += 1
            else:
                dropped += 1
                text = name.decode("utf-8", "replace")
                dropped_per_class[text] = dropped_per_class.get(text, 0) + 1
        if kept + dropped == 0:
            raise InputError("no rows (the file is empty)", path=input_file)
    logging.info("%s: kept %d rows, dropped %d rows of %d held-out classes", output_file, kept,
                 dropped, len(dropped_per_class))
    return HeldoutResult(kept, dropped, dropped_per_class)


def define_flags() -> None:
    flags.DEFINE_string("heldout_class_list", None,
                        "TSV of class_name, keep (1: keep the class's rows, 0: drop them).", required=True)
    flags.DEFINE_string("input_file", None, "Verified TSV to filter.", required=True)
    flags.DEFINE_string("output_file", None, "Filtered verified TSV.", required=True)


def main(argv: Sequence[str]) -> None:
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "input_file", "unexpected arguments %s" % argv[1:])
    fileio.refuse_output_equal_to_inputs({"output_file": FLAGS.output_file},
                                         [("--input_file", FLAGS.input_file),
                                          ("--heldout_class_list", FLAGS.heldout_class_list)])
    filter_heldout(FLAGS.heldout_class_list, FLAGS.input_file, FLAGS.output_file)


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
