"""A run's lock and record, TensorFlow-free (the training core and the classifier use them).

- `FileLock`: an exclusive flock on a lock file for the life of a run; a second run on the
  same output is refused with one line naming the lock and its holder (pid and host).
  `DirectoryLock` is the one on DIRECTORY/run.lock (training, the classifier, the
  quickstart's work directory); extraction locks OUTPUT.lock.
- `make_record` / `check_record`: DIRECTORY/run.json records what a run trains on (each
  data file's size and a SHA-256 of its first and last MiB, and the settings that shape the
  model and the data); resuming with other data or settings is refused with one line
  saying how to start afresh.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket

from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open
from noisylabels.state_files import read_json_state

LOCK_FILE = "run.lock"
RECORD_FILE = "run.json"
_DIGEST_BYTES = 1 << 20  # first and last MiB of each data file


def file_identity(path: str) -> dict:
    """Size and a SHA-256 of the first and last MiB of a file: cheap even for a 5 GB file,
    and different for any edit that changes the size, the header or either end."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_DIGEST_BYTES))
        if size > 2 * _DIGEST_BYTES:
            f.seek(size - _DIGEST_BYTES)
            digest.update(f.read(_DIGEST_BYTES))
    return {"size": size, "sha256_ends": digest.hexdigest()}


def make_record(data_files: dict, settings: dict) -> dict:
    """The run record: {"data": name -> file_identity, "settings": name -> value}."""
    return {"data": {name: file_identity(path) for name, path in sorted(data_files.items())},
            "settings": dict(settings)}


def _describe_difference(stored: dict, wanted: dict) -> str:
    changes = []
    for name in sorted(set(stored.get("data", {})) | set(wanted["data"])):
        if stored.get("data", {}).get(name) != wanted["data"].get(name):
            changes.append("%s changed" % name)
    for name in sorted(set(stored.get("settings", {})) | set(wanted["settings"])):
        old, new = stored.get("settings", {}).get(name), wanted["settings"].get(name)
        if old != new:
            changes.append("--%s %s -> %s" % (name, old, new))
    return ", ".join(changes)


def check_record(directory: str, record: dict, resuming: bool, write: bool = True) -> None:
    """Refuses to resume (resuming: the directory holds a run's state) a run made on other
    data or settings than `record` (from make_record); writes DIRECTORY/run.json otherwise.

    A directory without a record (an imported checkpoint, an older run) is accepted and gets one.
    """
    path = os.path.join(directory, RECORD_FILE)
    stored = None
    if os.path.exists(path):
        stored = read_json_state(path, "delete it to resume without the data check, or start afresh in a new "
                                       "directory")
    if stored is not None and resuming:
        difference = _describe_difference(stored, record)
        if difference:
            raise InputError("holds a run trained on other data or settings (%s); to start afresh use a "
                             "new directory or delete this one" % difference, path=directory)
    if stored != record and write:
        with atomic_open(path) as f:
            json.dump(record, f, indent=1, sort_keys=True)


class FileLock:
    """An exclusive flock on the file `path` for the life of a run; the file says who holds it.

    A second holder is refused at once (InputError naming the lock file and the holder).
    `release(remove=True)` deletes the lock file while still holding it; `acquire` makes
    sure the file it locked is still the one at `path`, so a lock file removed by its last
    holder never lets two runs in at once. A non-empty file at `path` that is not a lock
    of these tools ("pid N on HOST") is refused, never truncated.

    Args:
      path: the lock file (created when missing; its directory must exist).
      remedy: what the message tells a second run to do.
      remove_on_release: leaving the `with` block removes the lock file (no leftover
        beside an output); False keeps it (a run directory's run.lock).
    """

    def __init__(self, path: str, remedy: str = "wait for it to end or use another directory",
                 remove_on_release: bool = False):
        self.path = path
        self._remedy = remedy
        self._remove_on_release = remove_on_release
        self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release(remove=self._remove_on_release)
        return False

    def _refuse(self, holder: str):
        raise InputError("is held by another run (%s); %s" % (holder, self._remedy), path=self.path)

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise InputError("cannot create the lock file (%s)" % (err.strerror or err), path=self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                self._refuse(holder or "another process")
            if not _same_inode(fd, self.path):
                os.close(fd)  # the holder before us removed it: lock the new file instead
                continue
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            if text and not _LOCK_TEXT.match(text):
                os.close(fd)
                raise InputError("exists and is not a lock file of these tools (expected 'pid N on HOST'); "
                                 "it was left as it is: move it away or choose another output", path=self.path)
            break
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("pid %d on %s\n" % (os.getpid(), socket.gethostname())).encode(), 0)
        self._fd = fd

    def release(self, remove: bool = False) -> None:
        if self._fd is not None:
            if remove and _same_inode(self._fd, self.path):
                os.remove(self.path)  # our own lock file, still held
            os.close(self._fd)  # closing drops the flock
            self._fd = None


_LOCK_TEXT = re.compile(r"^pid \d+ on \S*$")


def _same_inode(fd: int, path: str) -> bool:
    try:
        on_disk = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


class DirectoryLock(FileLock):
    """An exclusive flock on DIRECTORY/run.lock: one run per run directory."""

    def __init__(self, directory: str):
        super().__init__(os.path.join(directory, LOCK_FILE))

    def __enter__(self) -> "DirectoryLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.acquire()
        return self

    def _refuse(self, holder: str):
        raise InputError("is in use by another run (%s); wait for it to end or use another directory"
                         % holder, path=os.path.dirname(self.path))
