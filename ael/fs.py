"""Atomic file replacement: the one way ``ael`` writes a file that readers must see whole.

A checkpoint, a run's manifest, an image sample or a dataset's statistics cache is written to a
temp file in the same folder, flushed and fsynced, renamed over the final name with
:func:`os.replace` (atomic on POSIX and Windows), and the folder fsynced where the platform
allows, so that the rename itself survives a power loss. A reader, or a crash at any moment, sees
either the old file or the new one, never a torn one; a process killed mid-write leaves only a
temp file, which :func:`remove_stale_temps` clears.

This is the bottom floor: it imports nothing from ``ael``, so every subpackage may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_PREFIX", "TEMP_SUFFIX", "remove_stale_temps", "write_atomic"]

#: Temp files are named ``.tmp-<final name>.<pid>-<token>.tmp``: hidden, and matched by both
#: ``.tmp-*`` and ``*.tmp``.
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".tmp"

# Folders that cannot be opened or fsynced on some file systems (a network mount, a FUSE
# folder): the file itself is durable by then, and the rename is done.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM}


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows has no folder fsync nor needs it)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as err:
        if err.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes | str | Callable[[BinaryIO], object], *,
                 encoding: str = "utf-8") -> Path:
    """Replace ``path`` with new content atomically: whole new file or untouched old one.

    Args:
        path: the final file; its folder must exist.
        data: the content as bytes, as text (encoded with ``encoding``), or a function that
            writes it to the binary file object it is given (``lambda f: torch.save(state, f)``).
        encoding: the encoding of text ``data``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        Whatever writing raised (an ``OSError``, or the exception of ``data``'s function), after
        removing the temp file; ``path`` then still holds its old content, or does not exist.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode(encoding)
    # Unique per process and call, so concurrent writers of one file never share a temp file.
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:  # the umask's permissions, as a plain open of ``path`` would give
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files that interrupted :func:`write_atomic` calls left in ``directory``.

    Only safe where a single process writes into the folder (a run folder, a checkpoint folder
    on rank 0): another writer's temp file in progress would be removed too.

    Returns:
        The files removed.
    """
    removed = []
    folder = Path(directory)
    if not folder.is_dir():
        return removed
    for stale in folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed.append(stale)
    return removed
