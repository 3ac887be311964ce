"""The model artifact: a directory with `model.pt` (a state dict) and `metadata.json`.

Loading never executes code from the file (`weights_only=True`), because model files get copied between
machines and a pickle can run anything. Saving is atomic (write a sibling directory, then rename), so a
daemon watching the path for hot reload never loads a half-written model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monitor.errors import ModelError
from monitor.models.kinds import build_model
from monitor.models.metadata import ModelMetadata

WEIGHTS_FILE = "model.pt"
METADATA_FILE = "metadata.json"
_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")
"""Line starts of torch's boilerplate around a refusal, left out of our message (it suggests unsafe loading)."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A module in eval mode on the CPU, with the metadata that says how to use it."""

    module: nn.Module
    metadata: ModelMetadata


def weights_bytes(model: nn.Module) -> bytes:
    """The exact bytes `save_artifact` writes to model.pt; the model version hashes them."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def save_artifact(
    model: nn.Module,
    metadata: ModelMetadata,
    directory: str | os.PathLike[str],
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write the artifact to `directory`, replacing any previous one there in a single rename.

    `extra_files` (name → content, e.g. the training report) land in the same directory in the same rename.
    """
    target = Path(directory)
    try:
        text = json.dumps(metadata.to_dict(), indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ModelError(f"model artifact {target}: metadata is not valid JSON: {error}") from error
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            _write_synced(staging / WEIGHTS_FILE, weights_bytes(model))
            _write_synced(staging / METADATA_FILE, text.encode())
            for name, content in (extra_files or {}).items():
                _write_synced(staging / name, content)
            staging.chmod(0o755)
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise ModelError(f"model artifact {target}: cannot write: {error}") from error
    return target


def load_artifact(directory: str | os.PathLike[str]) -> LoadedModel:
    """Read and check an artifact; every problem is a `ModelError` naming the path and what is wrong."""
    path = Path(directory)
    try:
        if not path.is_dir():
            raise ModelError(f"not a directory (an artifact holds {WEIGHTS_FILE} and {METADATA_FILE})")
        metadata = _read_metadata(path / METADATA_FILE)
        module = build_model(metadata.kind, metadata.shape)
        _fill_weights(module, _read_weights(path / WEIGHTS_FILE))
    except ModelError as error:
        raise ModelError(f"model artifact {path}: {error}") from error
    return LoadedModel(module.eval(), metadata)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _swap_in(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; an existing target is moved aside first and deleted afterwards.

    Between the two renames the path is briefly absent: a reader then gets a `ModelError` and keeps its
    current model, which is safe, unlike reading a mix of old and new files.
    """
    retired = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        if retired.exists():
            retired.rename(target)
        raise
    _sync_directory(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_metadata(path: Path) -> ModelMetadata:
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except OSError as error:
        raise ModelError(f"cannot read {path.name}: {error.strerror or error}") from error
    except ValueError as error:
        raise ModelError(f"{path.name} is not valid JSON: {error}") from error
    try:
        return ModelMetadata.from_dict(data)
    except ModelError as error:
        raise ModelError(f"{path.name}: {error}") from error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path.name} is missing")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises many types here; every one means "not a safe state dict"
        raise ModelError(
            f"{path.name} was refused by the safe loader (weights_only=True: the file is corrupt or holds "
            f"more than tensors): {_refusal_reason(error)}"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path.name} does not hold a state dict of tensors")
    return state


def _refusal_reason(error: Exception) -> str:
    """The reason in torch's refusal, without its advice to retry with weights_only=False."""
    lines = [line for line in str(error).splitlines() if line.strip() and not line.startswith(_TORCH_ADVICE)]
    return " ".join(lines) or type(error).__name__


def _fill_weights(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"{WEIGHTS_FILE} does not fit the sizes in {METADATA_FILE}: {error}") from error
