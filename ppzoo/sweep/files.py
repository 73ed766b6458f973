"""Atomic file writes for a sweep's folder: a reader (or a killed run) sees all of a file or nothing."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_atomic", "write_json"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder, then rename: readers see all of it or nothing."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes the file private; give it the usual mode
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(Exception):
            os.unlink(temporary)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def write_json(path: Path, payload: Any) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(payload, indent=1, default=_json_default), encoding="utf-8"))

