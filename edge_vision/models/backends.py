"""The one place that creates onnxruntime inference sessions.

:func:`create_onnx_session` maps a device name to an execution-provider chain and turns every
way a model file can fail to load into :class:`~edge_vision.models.errors.ModelLoadError`:

========== ==========================================================================
device     providers, in order of preference
========== ==========================================================================
cpu        CPU
cuda       CUDA, CPU (for the few operators CUDA lacks)
tensorrt   TensorRT (FP16, engine cache), CUDA, CPU
========== ==========================================================================

A device whose provider is missing from this onnxruntime build is refused up front instead of
onnxruntime's silent fall-back to CPU: the user asked for a GPU and should know they did not
get it.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edge_vision.models.errors import ModelLoadError

__all__ = [
    "DEVICES",
    "DeviceUnavailableError",
    "available_devices",
    "create_onnx_session",
    "providers_for",
]

DEVICES: tuple[str, ...] = ("cpu", "cuda", "tensorrt")
"""Devices :func:`create_onnx_session` understands (``jetson`` is jetson-inference, not ORT)."""

_PROVIDER = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

ProviderList = list[str | tuple[str, dict[str, Any]]]


class DeviceUnavailableError(ModelLoadError):
    """The requested device has no execution provider in this onnxruntime build (or no GPU)."""


def available_devices() -> list[str]:
    """Devices usable here: ORT devices whose provider exists, plus ``jetson`` when importable."""
    have = set(ort.get_available_providers())
    devices = [d for d in DEVICES if _PROVIDER[d] in have]
    # find_spec, not import: importing jetson_inference initialises CUDA.
    if importlib.util.find_spec("jetson_inference") is not None:
        devices.append("jetson")
    return devices


def providers_for(
    device: str,
    *,
    trt_cache_dir: str | Path | None = None,
    trt_fp16: bool = True,
) -> ProviderList:
    """The provider chain for ``device``; raises when its first provider is not available."""
    if device not in _PROVIDER:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    wanted = _PROVIDER[device]
    if wanted not in available:
        raise DeviceUnavailableError(
            f"device {device!r} needs {wanted}, which this onnxruntime build "
            f"({ort.__version__}, package {_ort_package()}) does not have; available "
            f"providers: {', '.join(available)}"
            + (
                " (install onnxruntime-gpu, with CUDA/cuDNN/TensorRT libraries, on a GPU machine)"
                if device != "cpu"
                else ""
            )
        )
    chain: ProviderList = []
    if device == "tensorrt":
        if trt_cache_dir is None:
            from edge_vision.models.human_models import cache_dir

            trt_cache_dir = cache_dir() / "tensorrt"
        Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
        chain.append(
            (
                "TensorrtExecutionProvider",
                {
                    "trt_fp16_enable": bool(trt_fp16),
                    # Building an engine takes minutes on a Jetson: cache it across runs.
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(trt_cache_dir),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(trt_cache_dir),
                },
            )
        )
    if device in ("tensorrt", "cuda") and "CUDAExecutionProvider" in available:
        chain.append("CUDAExecutionProvider")
    chain.append("CPUExecutionProvider")
    return chain


def create_onnx_session(
    path: str | Path,
    device: str = "cpu",
    *,
    trt_cache_dir: str | Path | None = None,
    trt_fp16: bool = True,
    intra_op_threads: int | None = None,
    providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
    spin_wait: bool = False,
) -> ort.InferenceSession:
    """An inference session for the ONNX file ``path`` on ``device``.

    ``providers`` (an explicit onnxruntime provider list) overrides ``device``; it exists for
    callers that predate devices. Raises :class:`ModelLoadError` (or its subclass
    :class:`DeviceUnavailableError`) with the file and the reason, ``ValueError`` for an unknown
    device name.

    ``spin_wait`` False (default) stops ONNX Runtime's worker threads from busy-waiting between
    ops: in a node they share the cores with the executor, DDS and other nodes, and spinning
    threads starve them. Measured on the 2-core build machine, nanodet-m beside one busy Python
    thread: 87 ms per frame spinning, 31 ms not (26 ms either way on an idle machine).
    """
    path = Path(path)
    if providers is None:
        chain: list[Any] = providers_for(device, trt_cache_dir=trt_cache_dir, trt_fp16=trt_fp16)
    else:
        chain = [p if isinstance(p, str) else (p[0], dict(p[1])) for p in providers]
    _check_file(path)
    options = ort.SessionOptions()
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    if not spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=chain)
    except Exception as exc:  # onnxruntime raises its own pybind11 types, not a common base
        raise ModelLoadError(f"{path}: {_describe_ort_error(exc)}") from exc
    if providers is None and device != "cpu":
        # ORT quietly drops a provider that fails to initialise (e.g. no GPU / driver).
        wanted = _PROVIDER[device]
        if wanted not in session.get_providers():
            raise DeviceUnavailableError(
                f"{path}: {wanted} is installed but failed to initialise (no GPU, or CUDA/"
                f"TensorRT libraries missing?); the session got {session.get_providers()}"
            )
    return session


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, not an ONNX file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: file is empty, not an ONNX model")


# "/onnxruntime_src/.../model.cc:256 onnxruntime::Model::Model(...) " before the real reason.
_SOURCE_LOCATION = re.compile(r"^\s*/\S+:\d+ \S+\(.*?\) ")


def _describe_ort_error(exc: Exception) -> str:
    kind = type(exc).__name__
    text = str(exc)
    reason = text.split(" failed:", 1)[1] if " failed:" in text else text
    reason = _SOURCE_LOCATION.sub("", reason).strip()
    if kind == "InvalidProtobuf":
        return f"not an ONNX model (the file does not parse as an ONNX protobuf: {reason})"
    if kind == "NoSuchFile":
        return "no such file"
    if kind in ("InvalidGraph", "Fail", "InvalidArgument"):
        return f"invalid ONNX model: {reason}"
    if kind == "NotImplemented":
        return f"uses an operator this onnxruntime ({ort.__version__}) lacks: {reason}"
    return f"onnxruntime cannot load it ({kind}): {reason}"


def _ort_package() -> str:
    from importlib import metadata

    for dist in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"
