"""Atomic file output and safe `.npy` input.

Outputs are written to a temporary file in the destination directory and renamed into
place only when complete, so an interrupted or failed run never leaves a half-written
file under the final name. Inputs are loaded with `allow_pickle=False` unless the caller
passes the user's explicit permission, and every failure is an `InputError` naming the
file.
"""

import contextlib
import os
import tempfile
import zipfile

import numpy as np

from util.errors import InputError


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` only on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    `path` is left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an output file gets the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Opens a temporary file beside `path` like `open`; it becomes `path` on success."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def save_npy(path, array):
    """Writes `array` to `path` in `.npy` format (no pickle), atomically."""
    array = np.asarray(array)
    if array.dtype == object:
        raise ValueError("refusing to write an object array (it would need pickle): %s" % path)
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_npy(path, field=None, ndim=None, allow_pickle=False, mmap_mode=None):
    """Loads a `.npy` file, turning every failure into an `InputError` naming the file.

    Args:
      path: the file.
      field: a name for the array in messages (default: the file name).
      ndim: if given, the required number of dimensions.
      allow_pickle: the user's explicit permission to unpickle object arrays.
      mmap_mode: passed to `np.load` (e.g. "r" to map a large file instead of reading it).

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
    return array
