"""ONNX Runtime twins of frozen torch modules: exported once per weights and input shape, cached, checked against torch.

The torch module stays the source of truth. Its ONNX graph is exported locally (nothing is
downloaded) into the user cache, keyed by a digest of its weights and what it is, written atomically,
and every time it is loaded its output on a fixed probe batch is compared with torch's: a stale or
damaged graph is exported again, and a graph that still disagrees falls back to torch, loudly.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hashidx.errors import HashidxError
from hashidx.io.atomic import atomic_path
from hashidx.io.progress import warn
from hashidx.io.threads import choose, spinning

if TYPE_CHECKING:
    from torch import nn

# Importing this module does not import torch: the CLI and the codes-only query path read the names below.
RUNTIMES = ("torch", "onnx")
DEFAULT_RUNTIME = "onnx"
OPSET = 17
TOLERANCE = 1e-4  # largest |onnx - torch| accepted on the probe batch
EXPORT_VERSION = 1  # part of every key: bump it when what is exported changes


_threads = 0  # ONNX Runtime's intra-op threads; 0: its default (one per core)


def set_threads(threads: int | None) -> None:
    """Cap the compute threads of torch and of ONNX Runtime sessions made from now on (an engine's worker sharing
    a machine with others); None leaves the defaults."""
    global _threads
    if threads is None:
        return
    import torch

    choose(threads)
    torch.set_num_threads(threads)
    _threads = threads


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise HashidxError(f"--runtime {runtime}: choose {' or '.join(RUNTIMES)}")
    return runtime


def cache_dir() -> Path:
    """$HASHIDX_CACHE_DIR, else $XDG_CACHE_HOME/hashidx, else ~/.cache/hashidx."""
    if os.environ.get("HASHIDX_CACHE_DIR"):
        return Path(os.environ["HASHIDX_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hashidx"


def state_digest(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes): what its outputs depend on."""
    import torch

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class OnnxTwin:
    """An ONNX Runtime session standing in for a torch module: float32 NCHW numpy in, its first output out."""

    def __init__(self, session: Any, path: Path | None):
        self.session, self.path = session, path
        self._input = session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0])


def _session(model: str | bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: hashidx reports what matters in one line
    options.enable_mem_pattern = False  # same speed here, ~120 MB less at 64-image batches (measured)
    options.intra_op_num_threads = _threads
    if not spinning():  # as OpenMP's threads do (hashidx.io.threads): idle workers sleep
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _export(module: nn.Module, example: Any, key: str) -> bytes:
    """The module as an ONNX graph (batch axis dynamic), with its cache key in the model metadata."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory(prefix="hashidx-onnx-") as tmp, warnings.catch_warnings():
        target = Path(tmp) / "graph.onnx"
        warnings.simplefilter("ignore")  # the exporter's notes on shape inference and deprecations
        torch.onnx.export(
            module,
            (example,),
            target,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, and these CNNs trace cleanly
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
        model = onnx.load(str(target))
    onnx.helper.set_model_props(model, {"hashidx_key": key})
    return bytes(model.SerializeToString())


def _disagreement(session: Any, key: str, probe: np.ndarray, reference: np.ndarray) -> str | None:
    """Why the session cannot stand in for the module (stale key, outputs off by more than TOLERANCE), or None."""
    if session.get_modelmeta().custom_metadata_map.get("hashidx_key") != key:
        return "was exported from other weights or by another hashidx (stale)"
    out = OnnxTwin(session, None)(probe)
    if out.shape != reference.shape:
        return f"gives shape {out.shape} where torch gives {reference.shape}"
    diff = float(np.abs(out - reference).max())
    if not diff <= TOLERANCE:  # also catches NaN
        return f"differs from torch by {diff:.1e} (> {TOLERANCE:g})"
    return None


def onnx_twin(module: nn.Module, what: str, identity: dict, input_shape: tuple[int, ...]) -> OnnxTwin | None:
    """The cached ONNX Runtime twin of an eval-mode `module` for inputs of `input_shape` (without the batch axis).

    `identity` names what the module is (backbone, layers, bands, ...); with the weights' digest, the input
    shape and the exporter settings it keys the cache. Returns None (after a warning) when no graph
    within TOLERANCE of torch can be had: the caller then runs torch.
    """
    import torch

    key = hashlib.sha256(
        json.dumps(
            {**identity, "weights": state_digest(module), "input": list(input_shape), "opset": OPSET},
            sort_keys=True,
        ).encode()
        + f"\nexport {EXPORT_VERSION}".encode()
    ).hexdigest()
    probe_t = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        reference = module(probe_t).numpy()
    probe = probe_t.numpy()
    path = cache_dir() / "onnx" / f"{key}.onnx"
    if path.exists():
        try:
            session = _session(str(path))
            reason = _disagreement(session, key, probe, reference)
        except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidGraph/... types
            reason = f"does not load ({type(exc).__name__})"
        if reason is None:
            return OnnxTwin(session, path)
        warn(f"{path}: cached ONNX graph of {what} {reason}; exporting it again")
    try:
        graph = _export(module, probe_t, key)
    except Exception as exc:  # an operator the exporter does not know, a missing onnx package...
        warn(f"{what} cannot be exported to ONNX ({type(exc).__name__}: {str(exc)[:100]}); running it with torch")
        return None
    where: Path | None = path
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(graph)
    except OSError as exc:
        warn(
            f"cannot cache the ONNX graph in {path.parent} ({exc.strerror}); set HASHIDX_CACHE_DIR to a writable folder"
        )
        where = None
    session = _session(str(path) if where else graph)
    reason = _disagreement(session, key, probe, reference)
    if reason is not None:
        warn(f"ONNX Runtime's {what} {reason}; running it with torch (--runtime torch)")
        return None
    return OnnxTwin(session, where)
