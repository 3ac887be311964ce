"""The ONNX Runtime backend: the loaded model exported in memory at load time, run by ONNX Runtime.

ONNX Runtime runs the same weights with less per-call overhead than eager PyTorch (several times faster on
one window, on par or faster on batches of hundreds, see docs/performance.md), and gives the same scores.
It replaces only the forward pass: normalisation and the reduction to scores stay those of
`monitor.models.inference`, so live scores, validation scores and thresholds keep one definition.

Not every model can go through it: the `nll` score method needs `pointwise_nll`, not the reconstruction.
For those, and for any model
whose export fails or whose exported outputs differ from the module's, `onnx_forward` returns None with
the reason, and the scorer serves with PyTorch after one warning line (a hot reload to such a model must
not stop the daemon). The export uses the TorchScript-based exporter (`dynamo=False`), which needs the
`onnx` package but not `onnxscript`.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

BACKENDS = ("torch", "onnx")
"""`scoring.backend` values; `monitor.config` repeats them (it may not import torch)."""

_PROBE_ROWS = 3
_PROBE_TOLERANCE = 1e-4
"""Largest difference between the module's and the session's reconstruction of the probe accepted at load."""


class OnnxForward:
    """A model's forward pass in an ONNX Runtime session: (B, W, F) float32 tensor in, reconstruction out.

    It is called like the module (`view_errors` calls `model(chunk)`), so the reduction is the same code.
    ONNX Runtime releases the GIL while it runs, like torch, so scoring can overlap with decoding.
    """

    def __init__(self, model_bytes: bytes, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one model, one graph path: more inter-op threads only compete
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
        self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(chunk.numpy(), dtype=np.float32)
        return torch.from_numpy(self._session.run(None, {self._input: array})[0])


def unsupported(module: nn.Module, score_method: str) -> str | None:
    """Why `module` cannot be scored through ONNX, or None when it can."""
    if score_method != "reconstruction":
        return f"score method {score_method!r} needs the model's likelihood, not its reconstruction"
    return None


def onnx_forward(
    module: nn.Module, window: int, n_features: int, score_method: str, threads: int
) -> tuple[OnnxForward | None, str]:
    """The module exported to an ONNX Runtime session with a dynamic batch axis, checked on a probe batch.

    Returns (forward, "") or (None, reason): the caller decides what a refusal means.
    """
    reason = unsupported(module, score_method)
    if reason is not None:
        return None, reason
    try:
        forward = OnnxForward(_export(module, window, n_features), threads)
        probe = torch.randn(_PROBE_ROWS, window, n_features, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            difference = float((forward(probe) - module(probe)).abs().max())
    except Exception as exc:  # an exporter or runtime failure of any kind means "serve with torch"
        return None, f"export failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    if not difference <= _PROBE_TOLERANCE:
        return None, f"exported model differs from the module by {difference:.3g} on a probe batch"
    return forward, ""


def _export(module: nn.Module, window: int, n_features: int) -> bytes:
    """ONNX bytes of `module` traced on a batch of 2 (not 1: a size-1 axis may be traced as a constant)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The legacy exporter warns that it is legacy, and the tracer about shapes that the dynamic batch
        # axis and the probe check cover; neither is actionable for the operator.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(2, window, n_features),),
            buffer,
            dynamo=False,
            input_names=["windows"],
            output_names=["reconstruction"],
            dynamic_axes={"windows": {0: "batch"}, "reconstruction": {0: "batch"}},
        )
    return buffer.getvalue()
