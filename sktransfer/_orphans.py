"""Temporary files of writers that died: how to tell them from live ones.

Shared by the disk cache (row files) and the embedding writer (``.partial``
outputs). A temporary file's name carries its writer's host and pid: on the
same host the writer is dead when its pid is; from another host (a shared file
system) a file untouched for an hour is taken as dead.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

__all__ = ["HOST", "ORPHAN_AGE_S", "alive", "is_orphan"]

HOST = socket.gethostname().replace(".", "_")
ORPHAN_AGE_S = 3600  # another machine's temporary file older than this is dead


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_orphan(path: Path, host: str, pid: int, now: float | None = None) -> bool:
    """Whether the temporary file ``path``, written by ``pid`` on ``host``,
    belongs to a writer that died.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> f = Path(tempfile.mkdtemp()) / "x.tmp"
    >>> _ = f.write_bytes(b"")
    >>> is_orphan(f, HOST, os.getpid()), is_orphan(f, HOST, 2**22 + 12345)
    (False, True)
    """
    if host == HOST:
        return not alive(pid)
    now = time.time() if now is None else now
    return now - path.stat().st_mtime > ORPHAN_AGE_S
