"""Fast parse of the feature column of a block of TSV rows, on several cores.

A TSV row is metadata, a tab, then h decimal numbers joined by ','. The rows of a block
lie in one buffer, one row per line. `parse_feature_rows` overwrites each row's metadata
and its last tab with spaces (NumPy's reader skips blanks before a number), so the block
can be handed to NumPy's C reader (`np.loadtxt`) as it is: no per-row copies, no join.
The rows are split into up to PARSE_PROCESSES parts; all parts but the first are parsed
in forked child processes that write into shared memory, the first in this process.

NumPy's reader rounds each decimal correctly to float64, then to float32, like
`np.float32(float(text))`. It refuses words (True, abc), blanks and ragged rows; nan and inf
it reads, and they are refused here. On any failure the result is None and the caller
parses the rows one by one to report the first bad one.

A forked child runs only NumPy's reader on its part and ends with os._exit (no exit
handlers, no flush of inherited buffers, fileio's SIGTERM clean-up skips a forked
process): it cannot remove or write the caller's files. It calls no library that runs
its own thread pool (the reason find_reference spawns rather than forks), and the parent
parses one tiny block before its first fork so that the child imports nothing: a fork
made while another thread of the caller imports TensorFlow (inference) stays safe.
"""

import io
import mmap
import os
import signal
from collections.abc import Sequence
from typing import Optional

import numpy as np

# Parts a block is parsed in (one per core, at most 2: the machines this runs on), and the
# fewest rows a part needs to be worth a process (a fork costs about 1 ms).
PARSE_PROCESSES = min(2, os.cpu_count() or 1)
MIN_ROWS_PER_PROCESS = 256


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
    parts = min(PARSE_PROCESSES, n // MIN_ROWS_PER_PROCESS) if hasattr(os, "fork") else 1
    bounds = np.linspace(0, n, max(parts, 1) + 1).astype(int).tolist()
    regions = [(slice(row_starts[a], row_ends[b - 1]), slice(a, b))
               for a, b in zip(bounds[:-1], bounds[1:])]
    with memoryview(text) as view:
        if len(regions) == 1:
            out = np.empty((n, width), dtype=np.float32)
            return out if _parse_into(view[regions[0][0]], out) else None
        out = np.frombuffer(mmap.mmap(-1, n * width * 4), dtype=np.float32).reshape(n, width)
        return out if _parse_in_processes(view, regions, out) else None


def _parse_into(text, out):
    """Parses the rows in `text` (bytes-like) into float32 `out` [n, h]; False if they are
    not n rows of h finite numbers."""
    try:
        values = np.loadtxt(io.BytesIO(text), dtype=np.float32, delimiter=",", comments=None,
                            ndmin=2)
    except (ValueError, OverflowError):
        return False
    if values.shape != out.shape or not np.isfinite(values).all():
        return False
    out[...] = values
    return True


def _parse_in_processes(view, regions, out):
    """Parses regions[k] = (byte slice of view, row slice of out) into out, regions 1...
    in forked children (out lies in shared memory), region 0 here. True if all succeed."""
    _parse_into(b"0", np.empty((1, 1), dtype=np.float32))  # any lazy import happens here
    children = []
    try:
        for text_slice, rows in regions[1:]:
            pid = os.fork()
            if pid == 0:  # the child: parse, then leave at once
                status = 1
                try:
                    status = 0 if _parse_into(view[text_slice], out[rows]) else 1
                finally:
                    os._exit(status)
            children.append(pid)
        text_slice, rows = regions[0]
        ok = _parse_into(view[text_slice], out[rows])
        while children:
            _, status = os.waitpid(children[-1], 0)
            children.pop()
            ok = ok and os.waitstatus_to_exitcode(status) == 0
        return ok
    finally:
        for pid in children:  # only when this process was interrupted
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
