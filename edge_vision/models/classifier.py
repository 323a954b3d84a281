"""Image classification on onnxruntime: whole frames, or batches of detection crops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edge_vision.core.classifications import Classifications
from edge_vision.core.crops import crop_boxes
from edge_vision.models.preprocess import as_bgr
from edge_vision.models.scoring import ScoringModel

__all__ = [
    "Classifier",
    "ClassifierSpec",
    "normalize_batch",
    "resize_for_input",
]


@dataclass(frozen=True, slots=True)
class ClassifierSpec:
    """What a classification model expects and how its output reads.

    The input tensor is ``(pixel * scale - mean) / std`` with pixels in 0..255 in
    ``channel_order``; ``mean``/``std`` are in those scaled units and that channel order (so
    ModelSpec-style 0..255 statistics need scale 1, torchvision-style 0..1 ones scale 1/255).
    """

    name: str
    input_size: tuple[int, int] = (224, 224)
    """(width, height) of the model input."""
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: Literal["stretch", "center_crop"] = "stretch"
    """``stretch`` the whole image to the input size, or take its largest centred square first
    (keeps the aspect ratio, drops the sides of a wide frame)."""
    labels: tuple[str, ...] = ()
    """One name per output class, in output order; empty: results are labelled by class id."""
    multi_label: bool = False
    """Independent sigmoid per class (several may apply) instead of one softmax over all."""
    outputs_logits: bool = True
    """False when the graph already ends in its softmax/sigmoid."""
    top_k: int = 5
    threshold: float = 0.0
    """Results scoring below this are dropped (after top-k)."""
    input_name: str | None = None
    """Graph input to feed; the first input when None."""
    output_name: str | None = None
    """Graph output holding the (B, classes) scores; the first output when None."""

    def __post_init__(self) -> None:
        # A tuple, so that specs stay hashable/immutable even when given a list of labels.
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


def resize_for_input(bgr: np.ndarray, spec: ClassifierSpec) -> np.ndarray:
    """The uint8 HxWx3 model-input image, in the spec's channel order."""
    image = as_bgr(bgr)
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"cannot classify an empty image of shape {bgr.shape}")
    if spec.resize == "center_crop":
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        image = image[y0 : y0 + side, x0 : x0 + side]
        h = w = side
    in_w, in_h = spec.input_size
    # Area averaging when shrinking: bilinear would alias a 1080p frame down to 224 px.
    shrink = in_w < w and in_h < h
    out = cv2.resize(
        image, (in_w, in_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    if spec.channel_order == "RGB":
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return out


def normalize_batch(images: np.ndarray, spec: ClassifierSpec) -> np.ndarray:
    """Float32 input tensor from a uint8 (B, H, W, 3) stack of :func:`resize_for_input` images."""
    if images.ndim == 3:
        images = images[None]
    scale = np.float32(spec.scale)
    mean = np.asarray(spec.mean, np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, np.float32)
    x = (images.astype(np.float32) * scale - mean) * inv_std
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


class Classifier(ScoringModel):
    """Runs one ONNX classification model on whole frames or on batches of crops.

    ``providers`` (an onnxruntime provider list) overrides ``device`` (``cpu``, ``cuda``,
    ``tensorrt``: see :mod:`edge_vision.models.backends`). ``top_k``/``threshold`` default to
    the spec's and may be changed on the instance at any time. A model with a dynamic batch
    axis classifies a whole list of crops in one inference call (in chunks of ``max_batch``
    when set); one whose batch is fixed to 1 is called once per image.

    Raises :class:`ModelLoadError` when the file is missing or not ONNX, or its input/output
    does not fit ``spec`` (rank, layout, size, dtype, number of classes vs labels).
    """

    def __init__(
        self,
        model_path: str | Path,
        spec: ClassifierSpec,
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
        *,
        device: str = "cpu",
        trt_cache_dir: str | Path | None = None,
        intra_op_threads: int | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        max_batch: int | None = None,
    ) -> None:
        self._open(
            model_path,
            spec,
            device,
            providers=providers,
            trt_cache_dir=trt_cache_dir,
            intra_op_threads=intra_op_threads,
            top_k=top_k,
            threshold=threshold,
            max_batch=max_batch,
        )
        self.input_name, self.batchable = self._check_input()
        self.output_name, self.num_classes = self._check_output()

    def _check_input(self) -> tuple[str, bool]:
        inputs = {i.name: i for i in self.session.get_inputs()}
        name = self.spec.input_name or next(iter(inputs))
        if name not in inputs:
            raise self._fail(f"no input {name!r} (inputs: {list(inputs)})")
        arg = inputs[name]
        if arg.type != "tensor(float)":
            raise self._fail(f"input {name!r} is {arg.type}, expected tensor(float)")
        shape = list(arg.shape)
        w, h = self.spec.input_size
        want = [None, 3, h, w] if self.spec.layout == "NCHW" else [None, h, w, 3]
        if len(shape) != 4:
            raise self._fail(
                f"input {name!r} has rank {len(shape)} {shape}, expected a 4-D "
                f"{self.spec.layout} image batch like {['batch', *want[1:]]}"
            )
        for axis in (1, 2, 3):
            if isinstance(shape[axis], int) and shape[axis] != want[axis]:
                raise self._fail(
                    f"input {name!r} has shape {shape}, expected {['batch', *want[1:]]} "
                    f"({self.spec.layout}, {w}x{h})"
                )
        batch = shape[0]
        if isinstance(batch, int) and batch != 1:
            raise self._fail(f"input {name!r} has a fixed batch of {batch}; need 1 or dynamic")
        return name, not isinstance(batch, int)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The float32 input tensor for a list of BGR (or grey/BGRA) uint8 images."""
        stack = np.stack([resize_for_input(im, self.spec) for im in images])
        return normalize_batch(stack, self.spec)

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, classes) probabilities for B images; feed these to a TemporalSmoother."""
        if len(images) == 0:
            return self._scores(np.zeros((0,), np.float32))
        return self._scores(self.preprocess(images))

    def classify(self, bgr: np.ndarray) -> Classifications:
        """Classify one whole frame (B = 1)."""
        return self.select(self.predict([bgr]))

    def classify_batch(self, images: Sequence[np.ndarray]) -> Classifications:
        """Classify several images (e.g. crops) in one inference call where the model allows."""
        if len(images) == 0:
            classes = self.num_classes or len(self.spec.labels) or self.top_k
            return Classifications.empty(0, min(self.top_k, classes), self.spec.multi_label)
        return self.select(self.predict(images))

    def classify_boxes(
        self, bgr: np.ndarray, xyxy: np.ndarray, expand: float = 1.2
    ) -> Classifications:
        """Classify the square crop around each box (row i of the result is box i)."""
        return self.classify_batch(crop_boxes(bgr, xyxy, expand=expand, square=True))
