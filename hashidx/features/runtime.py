"""ONNX Runtime twins of frozen torch modules: exported once per weights and input shape, cached, checked against torch.

The torch module stays the source of truth. Its ONNX graph is exported locally (nothing is
downloaded) into the user cache, keyed by a digest of its weights and what it is, written atomically,
and its output on a fixed probe batch is compared with torch's: a stale or damaged graph is exported
again, and a graph that still disagrees falls back to torch, loudly.

A graph that passed that check is recorded as trusted, under a name that can be known without torch (what the
module is and where its weights come from) and with the sha256 of its bytes. A later process whose weights
have that name loads the graph with ONNX Runtime alone when its bytes still have that digest: no torch import,
no probe batch. Any mismatch sends it back through the torch check.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
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
from hashidx.version import __version__

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


def _versions() -> dict[str, str]:
    """What a check against torch holds for: the graph's own runtime and the hashidx that exported it."""
    return {"onnxruntime": importlib.metadata.version("onnxruntime"), "hashidx": __version__}


def _trust_record(trust: dict, input_shape: tuple[int, ...]) -> Path:
    name = {**trust, "input": list(input_shape), "opset": OPSET, "export": EXPORT_VERSION, **_versions()}
    key = hashlib.sha256(json.dumps(name, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "onnx" / "trusted" / f"{key}.json"


def trusted_twin(trust: dict, input_shape: tuple[int, ...]) -> OnnxTwin | None:
    """The graph recorded as checked against torch for the module named by `trust` at this input shape, loaded
    without torch, or None (no record, a changed or missing graph: the caller then goes through `onnx_twin`)."""
    record = _trust_record(trust, input_shape)
    try:
        entry = json.loads(record.read_text())
        graph = record.parent.parent / str(entry["graph"])
        data = graph.read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        return None
    try:
        return OnnxTwin(_session(data), graph)
    except Exception:  # ONNX Runtime's own error types: the torch check then says what is wrong
        return None


def _trust(trust: dict | None, input_shape: tuple[int, ...], twin: OnnxTwin) -> OnnxTwin:
    """Record a checked graph as trusted (best effort: an unwritable cache only costs the next process the check)."""
    if trust is None or twin.path is None:
        return twin
    try:
        entry = {"graph": twin.path.name, "sha256": hashlib.sha256(twin.path.read_bytes()).hexdigest(), **trust}
        with atomic_path(_trust_record(trust, input_shape)) as tmp:
            tmp.write_text(json.dumps(entry, indent=1))
    except (OSError, HashidxError):
        pass
    return twin


def onnx_twin(
    module: nn.Module, what: str, identity: dict, input_shape: tuple[int, ...], trust: dict | None = None
) -> OnnxTwin | None:
    """The cached ONNX Runtime twin of an eval-mode `module` for inputs of `input_shape` (without the batch axis).

    `identity` names what the module is (backbone, layers, bands, ...); with the weights' digest, the input
    shape and the exporter settings it keys the cache. Returns None (after a warning) when no graph
    within TOLERANCE of torch can be had: the caller then runs torch. `trust` names the module without torch
    (`trusted_twin`); a graph that passes the check is recorded under it.
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
            return _trust(trust, input_shape, OnnxTwin(session, path))
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
    return _trust(trust, input_shape, OnnxTwin(session, where))
