"""Atomic file output and safe `.npy` input.

Outputs are written to a temporary file in the destination directory and renamed into
place only when complete, so an interrupted or failed run never leaves a half-written
file under the final name. Inputs are loaded with `allow_pickle=False` unless the caller
passes the user's explicit permission, and every failure is an `InputError` naming the
file.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import glob
import os
import shutil
import signal
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import numpy as np

from noisylabels.errors import InputError


# Temporary files and directories of this process, removed on SIGTERM: path -> pid.
_TEMPORARIES = {}
_SIGNAL_CLEANUP_INSTALLED = False


def usual_mode(directory: bool) -> int:
    """The mode `open` / `mkdir` would give under the current umask (0644 / 0755 for 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def set_usual_permissions(root: str) -> None:
    """Gives `root` and everything under it the usual modes (`usual_mode`), so that a
    program run by another user can read what tempfile.mkdtemp (0700) and friends made."""
    os.chmod(root, usual_mode(directory=True))
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), usual_mode(directory=True))
        for name in files:
            os.chmod(os.path.join(parent, name), usual_mode(directory=False))


def output_error(path: str, err: OSError) -> InputError:
    """An `InputError` naming the output `path` for an OSError met while writing it."""
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; nothing was written"
    return InputError("cannot write (%s)" % reason, path=path)


def remove_temporaries() -> None:
    """Removes the registered temporary files and directories of this process, and the
    files named after them (`TMP.*`, e.g. a scratch file a tool keeps beside its output)."""
    for path, pid in list(_TEMPORARIES.items()):
        if pid != os.getpid():  # a forked worker must not remove its parent's files
            continue
        for name in [path] + glob.glob(glob.escape(path) + ".*"):
            if os.path.isdir(name) and not os.path.islink(name):
                shutil.rmtree(name, ignore_errors=True)
            elif os.path.lexists(name):
                try:
                    os.remove(name)
                except OSError:
                    pass
        _TEMPORARIES.pop(path, None)


def _on_termination(signum, frame):
    """SIGTERM: remove this process's temporaries, then die of the signal as before."""
    del frame
    remove_temporaries()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_cleanup():
    """Installs `_on_termination` for SIGTERM unless the program has its own handler.

    (SIGINT needs none: Python raises KeyboardInterrupt and `registered_temporary`'s
    clean-up runs as the stack unwinds.)
    """
    global _SIGNAL_CLEANUP_INSTALLED
    if _SIGNAL_CLEANUP_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_termination)
    _SIGNAL_CLEANUP_INSTALLED = True


@contextlib.contextmanager
def registered_temporary(path: str) -> Iterator[str]:
    """Marks an existing temporary file or directory for removal on exit from the block
    by an exception (KeyboardInterrupt included) or on SIGTERM; yields `path`.

    A normal exit leaves it (the block has renamed it into place or removed it).
    """
    _install_signal_cleanup()
    _TEMPORARIES[path] = os.getpid()
    try:
        yield path
    except BaseException:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
        raise
    finally:
        _TEMPORARIES.pop(path, None)


def refuse_output_equal_to_inputs(output_paths: Mapping[str, str | None],
                                  input_paths: Iterable[tuple[str, str | None]]) -> None:
    """Raises InputError if an output path names the same file as an input path.

    Args:
      output_paths: {flag name: path or None} of the files a tool will write.
      input_paths: iterable of (description, path or None) of the files it reads.

    Paths are compared after resolving symbolic links and `..`; an existing output is
    also compared by device and inode (a hard link is the same file).
    """
    inputs = [(what, p) for what, p in input_paths if p]
    outputs = [(flag, out) for flag, out in output_paths.items() if out]
    for i, (flag, out) in enumerate(outputs):
        for what, source in inputs + [("--" + other, p) for other, p in outputs[:i]]:
            if same_file(out, source):
                raise InputError("is also %s (%s); writing it would destroy that input: choose "
                                 "another output path" % (what, source), path=out, field="--" + flag)


def tf_checkpoint_files(directory: str | None) -> list[tuple[str, str]]:
    """(description, path) of the TensorFlow checkpoint files in `directory`: its state file
    `checkpoint`, every `*.index` and `*.data-*`, and `.npz` files such as CleanNet's
    inference file (for `refuse_output_equal_to_inputs`)."""
    if not directory or not os.path.isdir(directory):
        return []
    names = sorted(n for n in os.listdir(directory)
                   if n == "checkpoint" or n.endswith((".index", ".npz")) or ".data-" in n)
    return [("a checkpoint file of %s" % directory, os.path.join(directory, n)) for n in names]


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether paths `a` and `b` name the same file, before either is opened for writing.

    True when they resolve to the same path (symbolic links anywhere in either path and
    `..` resolved, so an output that does not exist yet but lies in a symlinked directory
    is found too) or, both existing, when they are the same device and inode (a hard
    link). The one test every output-vs-input check uses.
    """
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        first, second = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it onto `path` only on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    `path` is left as it was; so is it when the process is stopped by SIGTERM (see
    `registered_temporary`). An OSError on the output (the path is a directory, its
    parent is a file, permission denied, disk full) becomes an `InputError` naming
    `path`. Scratch files the caller writes under names that start with the temporary
    path (e.g. `tmp + ".part"`) get the same OSError conversion and SIGTERM clean-up.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError("is a directory; an output file is needed here", path=path)
    directory = os.path.dirname(os.path.abspath(path))
    created = _missing_directories(directory)
    try:
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        except OSError as err:
            raise output_error(path, err) from None
        os.close(fd)
        with registered_temporary(tmp):
            try:
                os.chmod(tmp, usual_mode(directory=False))  # mkstemp makes 0600
                yield tmp
                os.replace(tmp, path)
            except OSError as err:
                if err.filename is None or str(err.filename).startswith(tmp):
                    raise output_error(path, err) from None
                raise
    except BaseException:
        _remove_if_empty(created)  # a failed write leaves no directory it made behind
        raise


def _missing_directories(directory: str) -> list[str]:
    """The directories of an absolute path that do not exist yet, deepest first."""
    missing = []
    while not os.path.exists(directory) and os.path.dirname(directory) != directory:
        missing.append(directory)
        directory = os.path.dirname(directory)
    return missing


def _remove_if_empty(directories: list[str]) -> None:
    """Removes the directories (deepest first) while they are empty."""
    for directory in directories:
        try:
            os.rmdir(directory)
        except OSError:
            return


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Opens a temporary file beside `path` like `open`; it becomes `path` on success."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes `array` to `path` in `.npy` format (no pickle), atomically."""
    array = np.asarray(array)
    if array.dtype == object:
        raise ValueError("refusing to write an object array (it would need pickle): %s" % path)
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


# The longest line a list file (one key, label or weight row per line) may have.
MAX_TEXT_LINE_BYTES = 1 << 20


def open_input(path: str | os.PathLike, field: str | None = None) -> IO[bytes]:
    """Opens an input file for binary reading; a missing or unreadable file is an InputError
    naming it (`field`: the flag or list it came from)."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError("file not found", path=os.fspath(path), field=field) from None
    except OSError as err:
        raise InputError("cannot read (%s)" % (err.strerror or err), path=os.fspath(path), field=field) from None


def iter_text_lines(path: str | os.PathLike, field: str | None = None,
                    max_line_bytes: int = MAX_TEXT_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Yields (line number, text) for every line of a UTF-8 text file, streamed.

    A byte-order mark at the start is dropped and the line end (LF or CRLF) removed, so
    every list reader treats such files alike. A missing or unreadable file, a line that
    is not UTF-8 or is longer than `max_line_bytes` (read no further than that) is an
    `InputError` naming the file and line; `field` names the flag or list in messages.
    """
    path = os.fspath(path)
    with open_input(path, field) as f:
        for number, raw in enumerate(iter_raw_lines(f, path, max_line_bytes, field), 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError("not valid UTF-8 text (byte %d of the line)" % (err.start + 1),
                                 path=path, line=number, field=field) from None
            yield number, text.rstrip("\r\n")


def iter_raw_lines(f: IO[bytes], path: str, max_line_bytes: int,
                   field: str | None = None) -> Iterator[bytes]:
    """Yields the lines of binary file `f` with their line ends; a line longer than
    `max_line_bytes` is an InputError raised after reading no more than that of it."""
    number = 0
    while True:
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        number += 1
        if len(raw) > max_line_bytes:
            raise InputError("line longer than %d bytes, more than a valid line can be" % max_line_bytes,
                             path=path, line=number, field=field)
        yield raw


def load_npy(path: str | os.PathLike, field: str | None = None, ndim: int | None = None,
             allow_pickle: bool = False, mmap_mode: str | None = None, finite: bool = True) -> np.ndarray:
    """Loads a `.npy` file, turning every failure into an `InputError` naming the file.

    Args:
      path: the file.
      field: a name for the array in messages (default: the file name).
      ndim: if given, the required number of dimensions.
      allow_pickle: the user's explicit permission to unpickle object arrays.
      mmap_mode: passed to `np.load` (e.g. "r" to map a large file instead of reading it).
      finite: refuse nan and inf in a floating-point array (checked in blocks, so a mapped
        file is not read into memory whole). Pass False only where the caller checks
        every value itself with a more precise message.

    Returns:
      The array (numeric dtype unless allow_pickle admitted an object array).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError("file not found", path=path, field=field)
    try:
        array = np.load(path, allow_pickle=allow_pickle, mmap_mode=None if allow_pickle else mmap_mode)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise InputError("holds a pickled object array; pickles can run code when loaded, "
                             "so they are read only with the explicit --allow_pickle flag "
                             "(use it only for files you trust)", path=path, field=field) from None
        raise InputError("not a readable .npy file (%s)" % err, path=path, field=field) from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError("not a readable .npy file, possibly truncated (%s)" % err,
                         path=path, field=field) from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise InputError("is an .npz archive, expected a single .npy array", path=path, field=field)
    if array.dtype != object and not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError("has dtype %s, expected numbers" % array.dtype, path=path, field=field)
    if ndim is not None and array.dtype != object and array.ndim != ndim:
        raise InputError("has shape %s, expected %d dimensions" % (array.shape, ndim),
                         path=path, field=field)
    if finite:
        check_finite(array, path, field)
    return array


def check_finite(array: np.ndarray, path: str, field: str | None = None, block_bytes: int = 1 << 26) -> None:
    """Raises InputError naming the first row (index on the first axis) holding nan or inf.

    Only floating-point and complex arrays can hold them; the check reads `block_bytes`
    of rows at a time, so a memory-mapped file is streamed, not loaded.
    """
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating)):
        return
    if array.ndim == 0:
        if not np.isfinite(array):
            raise InputError("is nan or inf; every value must be finite", path=path, field=field)
        return
    row_bytes = max(1, array.itemsize * int(np.prod(array.shape[1:])))
    step = max(1, block_bytes // row_bytes)
    for start in range(0, array.shape[0], step):
        block = np.asarray(array[start:start + step]).reshape(min(step, array.shape[0] - start), -1)
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if bad.size:
            raise InputError("row %d holds nan or inf; every value must be finite" % (start + bad[0]),
                             path=path, field=field)
