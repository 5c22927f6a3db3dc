"""Output directories a tool fills as a whole (a SavedModel, an imported checkpoint).

A tool never deletes what it did not write: a non-empty output directory is refused
unless the user passes the tool's explicit flag, and even then an existing entry is
replaced only when the tool's ownership marker in the directory (OWNER_MARKER, written
with every output: noisylabels/state_files.py) proves an earlier run of the same tool
made it, and only the entries that tool writes (`publish_entries`); without that proof
the tool refuses, listing the entries it would have replaced. Everything else in the
directory stays.
New entries are built in a temporary directory beside the target and moved in only when
complete, with the usual permissions (directories 0755, files 0644 under umask 022), so
a server running as another user can read them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection

from noisylabels.errors import InputError
from noisylabels.fileio import output_error, registered_temporary, set_usual_permissions
from noisylabels.state_files import Owned, delete_owned, read_marker

# The ownership marker a tool writes into an output directory it fills (state_files.write_marker).
OWNER_MARKER = "owner.json"


def check_output_directory(path: str, field: str, allow_non_empty: bool, flag_hint: str) -> None:
    """Refuses an output directory that is a file, or non-empty without the user's flag.

    Args:
      path: the output directory (it may not exist yet).
      field: its flag, for messages (e.g. "--export_dir").
      allow_non_empty: the user's explicit permission to write into a non-empty one.
      flag_hint: what to say to give that permission (e.g. "pass --overwrite to ...").
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError("exists and is not a directory", path=path, field=field)
    if os.path.isdir(path) and not allow_non_empty:
        try:
            entries = sorted(os.listdir(path))
        except OSError as err:
            raise output_error(path, err) from None
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise InputError("is not empty (holds %s); nothing was written: %s"
                             % (shown, flag_hint), path=path, field=field)


def make_staging_directory(target: str) -> str:
    """A new empty directory beside `target` (same file system, so moves are renames)."""
    parent = os.path.dirname(os.path.abspath(target))
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(target)) + ".",
                                suffix=".tmp", dir=parent)
    except OSError as err:
        raise output_error(target, err) from None


def ownership(target: str, tool: str) -> Owned | None:
    """The proof that `tool` made the output directory `target` (its OWNER_MARKER), or None.

    Raises:
      InputError: a marker file that is damaged or another tool's (one line naming it).
    """
    return read_marker(os.path.join(target, OWNER_MARKER), tool,
                       "it was left as it is: move it away or choose another output directory")


def publish_entries(staging: str, target: str, owned_names: Collection[str], proof: Owned | None) -> None:
    """Moves everything in `staging` into `target`; replaces only names in `owned_names`,
    and only with the `proof` that the same tool made them.

    Args:
      staging: a directory from `make_staging_directory`, fully written (the tool's
        OWNER_MARKER included). It is removed.
      target: the output directory; created (as the staging directory itself) if absent.
      owned_names: the entry names this tool writes; an existing entry of one of these
        names is replaced (also when the new output lacks it, so no stale part of an
        earlier output is mixed with the new one). Other entries are never touched.
      proof: `ownership(target, tool)`; None: nothing in target is proven the tool's, so
        an existing entry of an owned name is refused, listed, and nothing is replaced.

    On failure every moved entry is put back, so `target` holds what it held before.
    """
    set_usual_permissions(staging)
    if not os.path.exists(target):
        try:
            os.rename(staging, target)
            return
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)  # the staging directory this tool just made
            raise output_error(target, err) from None
    new_names = sorted(os.listdir(staging))
    stale = [n for n in sorted(set(owned_names) | set(new_names)) if os.path.lexists(os.path.join(target, n))]
    unowned = [n for n in stale if n not in owned_names]
    if unowned or (stale and proof is None):
        shutil.rmtree(staging, ignore_errors=True)  # the staging directory this tool just made
        if unowned:
            raise InputError("already holds %s, which this tool did not write; nothing was replaced"
                             % ", ".join(unowned), path=target)
        raise InputError("holds %s, which no marker of this tool (%s) proves it wrote; nothing was replaced: "
                         "move them away or choose another directory" % (", ".join(stale), OWNER_MARKER),
                         path=target)
    backup = make_staging_directory(target)
    with registered_temporary(backup):
        _swap_in(staging, target, backup, stale, new_names)
    if stale:
        delete_owned([backup], proof)  # the entries replaced: the proven earlier output
    else:
        os.rmdir(backup)


def _swap_in(staging, target, backup, stale, new_names):
    """Moves `stale` entries of target to backup, then new ones from staging to target."""
    moved_out, moved_in = [], []
    try:
        for name in stale:
            os.rename(os.path.join(target, name), os.path.join(backup, name))
            moved_out.append(name)
        for name in new_names:
            os.rename(os.path.join(staging, name), os.path.join(target, name))
            moved_in.append(name)
    except BaseException as err:
        for name in moved_in:
            os.rename(os.path.join(target, name), os.path.join(staging, name))
        for name in moved_out:
            os.rename(os.path.join(backup, name), os.path.join(target, name))
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise output_error(target, err) from None
        raise
    os.rmdir(staging)
