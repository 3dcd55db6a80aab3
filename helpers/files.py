"""Atomic file writes: a reader never sees a half-written file under its final name.

Every writer of the course (figures, GeoTIFFs, indexes, manifests, model cards) writes to a
temporary file in the target's folder and renames it onto the target when complete; on any
error the temporary file is removed and an existing target is left untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name is unique (``.{name}.{pid}.{random}.partial``), so concurrent writers do
    not collide, and it is created by the caller's writer with the usual file mode (``mkstemp``
    would leave 0600 on the final file). Parent folders are created.

    Example:
        >>> with atomic_path("out/figure.png") as tmp:  # doctest: +SKIP
        ...     fig.savefig(tmp, format="png")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
