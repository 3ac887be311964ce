"""A model store: versioned artifact directories plus a `CURRENT` file naming the one to serve.

    models/default/
        CURRENT                      "lstm-20261126-ce7896\\n", replaced atomically (write, fsync, rename)
        lstm-20261126-ce7896/        model.pt, metadata.json, report.md, loss.png, validation_errors.png
        dense-20261127-0a41b2/

`monitor train` publishes a new version and then moves `CURRENT`; the daemon polls `signature()` (a
couple of `stat` calls) and reloads when it changes. Rolling back is pointing `CURRENT` at an older
version (`monitor models --use VERSION`). A directory that holds `metadata.json` itself (the layout
before versions) still loads as a single artifact, unless a `CURRENT` file is there too.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from monitor.errors import ModelError
from monitor.models.artifact import METADATA_FILE, load_artifact, save_artifact
from monitor.models.metadata import ModelMetadata

CURRENT_FILE = "CURRENT"
KEEP_VERSIONS = 10
"""Versions kept besides the current one when a new one is published; older ones are deleted."""
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def resolve(path: str | os.PathLike[str]) -> Path:
    """The artifact directory that `path` (a store or a single artifact) serves now."""
    path = Path(path)
    pointer = path / CURRENT_FILE
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if (path / METADATA_FILE).is_file():
            return path
        raise ModelError(
            f"model artifact {path}: neither {CURRENT_FILE} nor {METADATA_FILE} is there; "
            f"train one with `monitor train --out {path}`"
        ) from None
    except OSError as error:
        raise ModelError(f"model store {path}: cannot read {CURRENT_FILE}: {error.strerror or error}") from error
    if not _VERSION_NAME.fullmatch(name):
        raise ModelError(f"model store {path}: {CURRENT_FILE} must name a version directory, got {name!r}")
    return path / name


def signature(path: str | os.PathLike[str]) -> tuple[object, ...]:
    """Changes whenever what `resolve(path)` loads may have changed; cheap enough to poll every second."""
    path = Path(path)
    marks: list[object] = []
    for file in (path / CURRENT_FILE, path / METADATA_FILE):
        try:
            stat = file.stat()
            marks.append((file.name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
        except OSError:
            marks.append((file.name, None))
    try:
        target = resolve(path) / METADATA_FILE
        stat = target.stat()
        marks.append((str(target), stat.st_ino, stat.st_mtime_ns))
    except (ModelError, OSError):
        marks.append(None)
    return tuple(marks)


def publish(
    model: nn.Module,
    metadata: ModelMetadata,
    store: str | os.PathLike[str],
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write `store/<version>/`, then point `CURRENT` at it, then prune old versions; returns the version dir."""
    store = Path(store)
    target = save_artifact(model, metadata, store / metadata.version, extra_files)
    point_current(store, metadata.version)
    _prune(store, keep={metadata.version})
    return target


def use(store: str | os.PathLike[str], version: str) -> ModelMetadata:
    """Serve an existing `version` (a rollback): it must load before `CURRENT` moves to it."""
    store = Path(store)
    if not _VERSION_NAME.fullmatch(version):
        raise ModelError(f"not a version name: {version!r}")
    metadata = load_artifact(store / version).metadata
    point_current(store, version)
    return metadata


def versions(store: str | os.PathLike[str]) -> list[str]:
    """Version directories of `store`, oldest first (by modification time)."""
    store = Path(store)
    if not store.is_dir():
        return []
    found = [d for d in store.iterdir() if _VERSION_NAME.fullmatch(d.name) and (d / METADATA_FILE).is_file()]
    return [d.name for d in sorted(found, key=lambda d: (d.stat().st_mtime_ns, d.name))]


def point_current(store: Path, version: str) -> None:
    """Replace `CURRENT` in one rename, so a poller reads either the old name or the new one."""
    try:
        handle, staging = tempfile.mkstemp(prefix=f".{CURRENT_FILE}.", dir=store)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(version + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(staging, 0o644)  # mkstemp makes it private; readers may run as another user
        os.replace(staging, store / CURRENT_FILE)
    except OSError as error:
        raise ModelError(f"model store {store}: cannot update {CURRENT_FILE}: {error}") from error


def _prune(store: Path, keep: set[str]) -> None:
    names = [name for name in versions(store) if name not in keep]
    for name in names[: max(len(names) - KEEP_VERSIONS, 0)]:
        shutil.rmtree(store / name, ignore_errors=True)
