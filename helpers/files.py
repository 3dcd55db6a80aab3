"""Atomic file writes: a reader never sees a half-written file under its final name.

Every writer of the course (figures, GeoTIFFs, indexes, manifests, model cards) writes to a
temporary file in the target's folder and renames it onto the target when complete; on any
error the temporary file is removed and an existing target is left untouched.

Temporary names are unique per process and call (``.{name}.{pid}.{random}.partial``), so two
processes writing into one folder never remove or rename each other's files, and a later run
can tell the leftovers of a killed process (:func:`is_stale_partial`) from the files of a
process still writing. :func:`replace_durably` flushes the temporary file to disk before the
rename and the folder after it, so after a power loss the target is the old file or the
complete new one, never an empty or truncated file under the final name.
"""

from __future__ import annotations

import glob
import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "is_stale_partial",
    "lock_file",
    "partial_path",
    "remove_stale_partials",
    "replace_durably",
]

PARTIAL_SUFFIX = ".partial"
#: ``.{name}.{pid}.{12 hex digits}.partial``; older versions wrote ``.{name}.partial``.
_PARTIAL_NAME = re.compile(r"^\.(?P<name>.+?)(?:\.(?P<pid>\d+)\.[0-9a-f]{12})?\.partial$")


def partial_path(path: str | os.PathLike) -> Path:
    """A unique temporary name next to ``path``: ``.{name}.{pid}.{random}.partial``.

    Example:
        >>> partial_path("out/a.tif").name.startswith(".a.tif.")
        True
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process), or cannot tell: keep its files
    return True


def is_stale_partial(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary file of a writer that is gone (a killed run).

    True for a name of :func:`partial_path` whose process no longer runs on this machine, and
    for the fixed ``.{name}.partial`` names of earlier versions; False for the temporary files
    of running processes (this one included) and for any other name.
    """
    match = _PARTIAL_NAME.match(Path(path).name)
    if match is None:
        return False
    pid = match.group("pid")
    return pid is None or not _pid_alive(int(pid))


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of killed writers of ``path``; return those removed."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for candidate in path.parent.glob(f".{glob.escape(path.name)}*{PARTIAL_SUFFIX}"):
            match = _PARTIAL_NAME.match(candidate.name)
            if match and match.group("name") == path.name and is_stale_partial(candidate):
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return removed


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return  # folders cannot be opened for fsync on Windows; the rename is durable there
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some network file systems refuse fsync on folders: best effort
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename ``tmp`` onto ``path`` after flushing ``tmp``'s bytes to disk (then the folder).

    Without the flush a power loss soon after the rename can leave ``path`` empty or
    truncated: file systems may commit the rename before the data.
    """
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_folder(Path(path).parent)


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name is unique (:func:`partial_path`), so concurrent writers do not collide,
    and it is created by the caller's writer with the usual file mode (``mkstemp`` would leave
    0600 on the final file). Parent folders are created. With ``durable`` (default) the file
    is flushed to disk before the rename (:func:`replace_durably`).

    Example:
        >>> with atomic_path("out/figure.png") as tmp:  # doctest: +SKIP
        ...     fig.savefig(tmp, format="png")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        if durable:
            replace_durably(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically and durably and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _lock_holder(path: Path) -> tuple[int, str] | None:
    """``(pid, host)`` written in a lock file, or None when it cannot be read (being written)."""
    try:
        pid, _, host = path.read_text(encoding="utf-8").strip().partition("@")
        return int(pid), host
    except (OSError, ValueError):
        return None


@contextmanager
def lock_file(path: str | os.PathLike, busy: str) -> Iterator[None]:
    """Hold the lock file ``path`` (it holds ``pid@host``) for the block; remove it after.

    The file is created exclusively, so of two processes only one gets it. A lock left by a
    process of this machine that no longer runs (a killed run) is taken over.

    Args:
        path: The lock file.
        busy: The error message when a running process holds the lock; ``{holder}`` is
            replaced by ``pid N`` (``pid N on HOST`` for another machine).

    Raises:
        RuntimeError: A running process (this one included), or a process of another machine,
            holds the lock.
    """
    path, host = Path(path), socket.gethostname()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is None or holder[1] != host or _pid_alive(holder[0]):
                pid, where = holder if holder is not None else ("?", host)
                text = f"pid {pid}" + ("" if where == host else f" on {where}")
                raise RuntimeError(busy.format(holder=text)) from None
            path.unlink(missing_ok=True)  # its process is gone: take the lock over
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}@{host}\n")
        break
    else:
        raise RuntimeError(busy.format(holder="another process"))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
