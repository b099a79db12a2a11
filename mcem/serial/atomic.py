"""The one atomic writer of the package's files (results, checkpoints, history chunks).

:func:`write_atomic` writes a file to a temporary file in the same folder named after its
target, ``<prefix><target name>.<12 hex digits>.tmp``, flushes and fsyncs it, gives it the
permission bits of the file it replaces (when there is one) and moves it over the target with
:func:`os.replace`; then it fsyncs the folder where that is possible, so that the rename survives
a power failure. On any error (KeyboardInterrupt included) the temporary file is removed and an
existing target is left untouched: a reader finds the old file or the new one, never a torn one.

A process killed during a write leaves its temporary file behind; :func:`remove_leftovers`
removes the temporary files of one target only (the exact name pattern of that target), never
another's. Checkpoints and their history chunks name their temporary files with
:data:`TMP_PREFIX` (``.mcem-ckpt-run.mcem.<hex>.tmp``), results with :data:`RESULT_TMP_PREFIX`
(``.fit.npz.<hex>.tmp``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable

__all__ = ["write_atomic", "remove_leftovers", "fsync_directory", "temp_name", "TMP_PREFIX",
           "RESULT_TMP_PREFIX"]

TMP_PREFIX = ".mcem-ckpt-"
RESULT_TMP_PREFIX = "."


def temp_name(target: str, prefix: str = TMP_PREFIX) -> str:
    """A fresh temporary file name for ``target`` (a file name, not a path)."""
    return f"{prefix}{target}.{secrets.token_hex(6)}.tmp"


def leftover_pattern(target: str, prefix: str = TMP_PREFIX) -> re.Pattern:
    """The names :func:`temp_name` gives the temporary files of ``target``."""
    return re.compile(re.escape(f"{prefix}{target}.") + r"[0-9a-f]{12}\.tmp")


def remove_leftovers(folder: str, target: str, prefix: str = TMP_PREFIX) -> list[str]:
    """Remove the temporary files a killed writer of ``folder/target`` left; return their names."""
    pattern = leftover_pattern(target, prefix)
    gone = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return gone
    for e in entries:
        if pattern.fullmatch(e.name):
            with contextlib.suppress(OSError):
                os.unlink(e.path)
                gone.append(e.name)
    return gone


def fsync_directory(folder: str) -> None:
    """Make a rename or a new entry in ``folder`` durable (POSIX; a no-op where unsupported)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        dfd = os.open(folder, flags)
    except OSError:  # pragma: no cover - directories cannot be opened everywhere
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - directories cannot be fsynced everywhere
        pass
    finally:
        os.close(dfd)


def write_atomic(path: str, data: bytes | Callable, *, prefix: str = TMP_PREFIX, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: temporary file named after ``path``, fsync, rename.

    Parameters
    ----------
    path : str
        The target file.
    data : bytes or callable
        The content, or a function that writes it to the open binary file it is given (so that
        a large archive is streamed to disk rather than built in memory first).
    prefix : str
        Start of the temporary file's name (:data:`TMP_PREFIX` or :data:`RESULT_TMP_PREFIX`).
    sync_dir : bool
        Fsync the folder after the rename (the rename then survives a power failure).

    On any error (also KeyboardInterrupt) the temporary file is removed and an existing ``path``
    is left untouched. An existing file's permission bits are kept.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, temp_name(os.path.basename(path), prefix))
    mode = None
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_directory(folder)
