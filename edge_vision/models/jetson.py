"""Thin adapter over NVIDIA's jetson-inference (``detectNet``, ``imageNet``) for Jetson boards.

UNTESTED: jetson-inference only exists on Jetson devices (JetPack, built from
github.com/dusty-nv/jetson-inference); the build machines have none, so this module is written
against its documented Python API and its test skips. It runs jetson-inference's own networks
(``ssd-mobilenet-v2``, ``resnet18``...) or ONNX files exported for it (``train_ssd.py``
format: input ``input_0``, outputs ``scores`` and ``boxes``), not the zoo's ONNX entries; for
those, use device ``tensorrt`` (ONNX Runtime's TensorRT provider).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_vision.core.detections import Detections


def available() -> bool:
    """Whether jetson-inference is importable (checked without importing it: that starts CUDA)."""
    return importlib.util.find_spec("jetson_inference") is not None


def _modules() -> tuple[Any, Any]:
    return importlib.import_module("jetson_inference"), importlib.import_module("jetson_utils")


@dataclass(frozen=True, slots=True)
class JetsonSpec:
    """The fields the detector node reads and replaces, as on ``ModelSpec``."""

    name: str
    labels: tuple[str, ...]
    score_threshold: float = 0.5
    iou_threshold: float = 0.5
    max_detections: int = 100
    input_size: tuple[int, int] = (0, 0)


def _network_kwargs(network: str | Path, labels: str | Path | None) -> dict[str, Any]:
    """A built-in network name, or an ONNX file in jetson-inference's export format."""
    if str(network).endswith(".onnx"):
        kwargs: dict[str, Any] = {"model": str(network)}
        if labels is not None:
            kwargs["labels"] = str(labels)
        return kwargs
    return {"network": str(network)}


def _to_cuda_rgb(jetson_utils: Any, bgr: np.ndarray) -> Any:
    rgb = np.ascontiguousarray(bgr[..., 2::-1]) if bgr.ndim == 3 else np.stack([bgr] * 3, -1)
    return jetson_utils.cudaFromNumpy(rgb)


class JetsonDetector:
    """``jetson_inference.detectNet`` behind the :class:`~edge_vision.models.detector.Detector`
    interface (``spec``, ``detect(bgr) -> Detections``). Untested (see module docs)."""

    def __init__(
        self,
        network: str | Path,
        labels: str | Path | None = None,
        threshold: float = 0.5,
    ) -> None:
        inference, self._utils = _modules()
        kwargs = _network_kwargs(network, labels)
        if "model" in kwargs:
            # train_ssd.py's export names; detectNet needs them spelled out for ONNX.
            kwargs.update(input_blob="input_0", output_cvg="scores", output_bbox="boxes")
        self.net = inference.detectNet(threshold=threshold, **kwargs)
        names = tuple(self.net.GetClassDesc(i) for i in range(self.net.GetNumClasses()))
        self.spec = JetsonSpec(name=str(network), labels=names, score_threshold=threshold)

    def detect(self, bgr: np.ndarray) -> Detections:
        self.net.SetConfidenceThreshold(self.spec.score_threshold)
        found = self.net.Detect(_to_cuda_rgb(self._utils, bgr), overlay="none")
        found = sorted(found, key=lambda d: -d.Confidence)[: self.spec.max_detections]
        if not found:
            return Detections.empty(with_labels=True)
        labels = self.spec.labels
        return Detections(
            [[d.Left, d.Top, d.Right, d.Bottom] for d in found],
            [d.Confidence for d in found],
            [d.ClassID for d in found],
            labels=[
                labels[d.ClassID] if 0 <= d.ClassID < len(labels) else str(d.ClassID) for d in found
            ],
        )


class JetsonClassifier:
    """``jetson_inference.imageNet``: ``classify(bgr) -> (class_id, label, confidence)``.

    Untested (see module docs).
    """

    def __init__(self, network: str | Path, labels: str | Path | None = None) -> None:
        inference, self._utils = _modules()
        kwargs = _network_kwargs(network, labels)
        if "model" in kwargs:
            kwargs.update(input_blob="input_0", output_blob="output_0")
        self.net = inference.imageNet(**kwargs)
        self.labels = tuple(self.net.GetClassDesc(i) for i in range(self.net.GetNumClasses()))
        self.name = str(network)

    def classify(self, bgr: np.ndarray) -> tuple[int, str, float]:
        class_id, confidence = self.net.Classify(_to_cuda_rgb(self._utils, bgr))
        label = self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)
        return int(class_id), label, float(confidence)
