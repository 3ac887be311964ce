"""Which torch device training or scoring runs on, by name, checked once up front: a GPU asked for on a
machine without one is one clear line at start, not a traceback in the middle of a run."""

from __future__ import annotations

import torch

from monitor.errors import ModelError


def resolve_device(
    name: str, setting: str = "--device", instead: str = "train on the CPU with --device cpu (the default)"
) -> torch.device:
    """The torch device called `name`; `setting` names where it was asked for and `instead` what to do
    when CUDA is not there, both for the `ModelError`."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ModelError(f"{setting} {name}: not a torch device name ({error}); use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
        raise ModelError(
            f"{setting} {name}: CUDA is not available on this machine (torch {torch.__version__} with {build}, "
            f"{torch.cuda.device_count()} GPUs visible); {instead}"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ModelError(f"{setting} {name}: there are only {torch.cuda.device_count()} CUDA devices")
    return device
