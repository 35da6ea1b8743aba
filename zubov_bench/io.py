"""Atomic file writes: every file the suite writes goes through a temporary file and a rename."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()

# Faults of the environment, not of the program: each becomes one line naming the path.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EROFS, errno.EACCES, errno.EPERM}


def log_to_stderr(message: str) -> None:
    """The default progress log of long commands: one line on stderr, flushed (a log file follows it)."""
    print(message, file=sys.stderr, flush=True)


def environment_error(path, exc: OSError) -> UserError:
    return UserError(f"cannot write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def reporting_write_faults(path: str | os.PathLike) -> Iterator[None]:
    """Turn a disk-full, quota, read-only, permission or name-length error inside the block into a
    UserError naming `path`; any other error passes through unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno in ENVIRONMENT_ERRNOS:
            raise environment_error(path, exc) from None
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it over `path` only on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes it 0600; results are shared like any other file
    try:
        with reporting_write_faults(path):
            yield tmp_path
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and check that we can write there, or raise a UserError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    check_can_create_files(path, path)
    return path


def check_can_create_files(folder: Path, target: str | os.PathLike) -> None:
    """Raise a UserError (naming `target`) unless a file can be created in the existing `folder`.

    A real probe file, because os.access() says yes to root everywhere, even in /proc.
    """
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
    except OSError as exc:
        raise UserError(f"output folder {target} is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
