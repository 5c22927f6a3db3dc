"""Fast parse of the feature column of a block of TSV rows, in this process.

A TSV row is metadata, a tab, then h decimal numbers joined by ','. The rows of a block
lie in one buffer, one row per line. `parse_feature_rows` overwrites each row's metadata
and its last tab with spaces (the reader skips blanks before a number), so the block can
be handed as it is to pandas' C CSV reader (`pandas.read_csv`, engine "c"): no per-row
copies, no join, no child process (a fork inside a process that has loaded TensorFlow,
with its many threads, can deadlock).

The reader rounds each decimal to float64, then to float32, like `np.float32(float(text))`
(tests/test_tsv_parallel_parse.py checks it against float()). It refuses words (True, abc),
blanks and ragged rows; nan and inf it may read, and they are refused here. On any failure
the result is None and the caller parses the rows one by one to report the first bad one.
"""

import io
from collections.abc import Sequence
from typing import Optional

import numpy as np


def parse_feature_rows(text: bytearray, row_starts: Sequence[int], feature_starts: Sequence[int],
                       row_ends: Sequence[int], width: int) -> Optional[np.ndarray]:
    """Parses the feature columns of n rows that lie in `text`.

    Args:
      text: the rows, consecutive lines (only a line end, LF or CRLF, between two rows).
        Overwritten: bytes row_starts[i] to feature_starts[i] become spaces.
      row_starts, feature_starts, row_ends: n offsets into text: where row i begins,
        where its feature text begins (after its last tab) and where it ends (line end
        excluded).
      width: the number of values h each row must have.

    Returns:
      float32 [n, width], all finite; None when any row is not `width` finite numbers.
    """
    for start, feature_start in zip(row_starts, feature_starts):
        text[start:feature_start] = b" " * (feature_start - start)
    n = len(row_starts)
    if n == 0:
        return np.empty((0, width), dtype=np.float32)
    with memoryview(text) as view:
        values = _read_numbers(view[row_starts[0]:row_ends[-1]])
    if values is None or values.shape != (n, width) or not np.isfinite(values).all():
        return None
    return values


def _read_numbers(text) -> Optional[np.ndarray]:
    """Lines of comma-separated numbers (bytes-like) → float32 [lines, values]; None when
    they are not a rectangle of numbers (a blank line, a word, a ragged row)."""
    import pandas as pd  # imported on first use: tools that parse no TSV start faster

    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused by the caller
            frame = pd.read_csv(io.BytesIO(text), header=None, dtype=np.float32, engine="c",
                                skip_blank_lines=False, na_filter=False, comment=None)
    except (ValueError, OverflowError):  # pandas' ParserError and EmptyDataError are ValueErrors
        return None
    return frame.to_numpy(dtype=np.float32)
