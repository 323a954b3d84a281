"""What image and video classifiers share: an ONNX Runtime session whose output is one row of
class scores per input, checked at load time, run in batches, activated and top-K selected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_vision.core.classifications import NO_CLASS, Classifications
from edge_vision.models.backends import create_onnx_session
from edge_vision.models.errors import ModelLoadError


def activate(raw: np.ndarray, multi_label: bool) -> np.ndarray:
    """Per-class probabilities from (B, C) logits: sigmoid when multi-label, else softmax."""
    z = np.asarray(raw, np.float32)
    if multi_label:
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    z = z - z.max(axis=1, keepdims=True)  # exp of large logits would overflow
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def select_top_k(
    scores: np.ndarray,
    labels: Sequence[str] = (),
    top_k: int = 5,
    threshold: float = 0.0,
    multi_label: bool = False,
) -> Classifications:
    """The ``top_k`` best classes of each row of (B, C) ``scores``, minus those < ``threshold``.

    Softmax scores: at most ``top_k`` classes above the threshold (with threshold > 0.5 at most
    one can pass). Sigmoid scores: every class above the threshold, capped at ``top_k``.
    Either way, the best ``top_k`` by score filtered by the threshold; ties keep class order.
    """
    probs = np.asarray(scores, np.float32)
    if probs.ndim == 1:
        probs = probs[None]
    c = probs.shape[1]
    k = min(int(top_k), c)
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(probs, order, axis=1)
    keep = top >= threshold  # sorted descending, so kept slots come first in every row
    class_ids = np.where(keep, order, NO_CLASS).astype(np.int32)
    top = np.where(keep, top, np.float32(0.0)).astype(np.float32)
    names = [
        [labels[j] if j < len(labels) else str(j) for j in row[row != NO_CLASS].tolist()]
        for row in class_ids
    ]
    return Classifications(class_ids, top, names, multi_label)


class ScoringModel:
    """Base of :class:`~edge_vision.models.classifier.Classifier` and
    :class:`~edge_vision.models.action.VideoClassifier`; subclasses set the attributes below
    in their ``__init__`` (``spec`` needs ``name``, ``labels``, ``output_name``,
    ``outputs_logits`` and ``multi_label``)."""

    model_path: Path
    spec: Any
    session: Any
    input_name: str
    output_name: str
    num_classes: int | None
    top_k: int
    threshold: float
    max_batch: int | None
    batchable: bool

    def _open(
        self,
        model_path: str | Path,
        spec: Any,
        device: str,
        *,
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None,
        trt_cache_dir: str | Path | None,
        intra_op_threads: int | None,
        top_k: int | None,
        threshold: float | None,
        max_batch: int | None,
    ) -> None:
        """Set the common attributes and create the session (subclasses then check it)."""
        self.model_path = Path(model_path)
        self.spec = spec
        self.top_k = spec.top_k if top_k is None else int(top_k)
        self.threshold = spec.threshold if threshold is None else float(threshold)
        self.max_batch = max_batch
        self.session = create_onnx_session(
            self.model_path,
            device,
            trt_cache_dir=trt_cache_dir,
            intra_op_threads=intra_op_threads,
            providers=providers,
        )

    def _fail(self, problem: str) -> ModelLoadError:
        return ModelLoadError(f"{self.model_path}: {problem} (spec {self.spec.name!r})")

    def _check_output(self) -> tuple[str, int | None]:
        outputs = {o.name: o for o in self.session.get_outputs()}
        name = self.spec.output_name or next(iter(outputs))
        if name not in outputs:
            raise self._fail(f"no output {name!r} (outputs: {list(outputs)})")
        shape = list(outputs[name].shape)
        if len(shape) != 2:
            raise self._fail(f"output {name!r} has shape {shape}, expected (batch, classes)")
        classes = shape[1] if isinstance(shape[1], int) else None
        if classes is not None:
            self._check_classes(classes)
        return name, classes

    def _check_classes(self, classes: int) -> None:
        labels = self.spec.labels
        if labels and classes != len(labels):
            raise self._fail(
                f"model outputs {classes} classes but the spec has {len(labels)} labels"
            )

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Raw (B, classes) model output for a preprocessed tensor: one inference call."""
        (raw,) = self.session.run([self.output_name], {self.input_name: tensor})
        raw = np.asarray(raw, np.float32)
        if self.num_classes is None:
            # Class count only known now (dynamic in the graph): check it once.
            self._check_classes(raw.shape[1])
            self.num_classes = int(raw.shape[1])
        return raw

    def _scores(self, tensor: np.ndarray) -> np.ndarray:
        """(B, classes) probabilities for a preprocessed batch, in as few calls as allowed."""
        if len(tensor) == 0:
            return np.zeros((0, self.num_classes or len(self.spec.labels)), np.float32)
        step = (self.max_batch or len(tensor)) if self.batchable else 1
        raw = np.concatenate(
            [self.infer(tensor[i : i + step]) for i in range(0, len(tensor), step)]
        )
        return raw if not self.spec.outputs_logits else activate(raw, self.spec.multi_label)

    def select(self, scores: np.ndarray) -> Classifications:
        """Top-k/threshold selection on (B, classes) probabilities (e.g. smoothed ones)."""
        return select_top_k(
            scores, self.spec.labels, self.top_k, self.threshold, self.spec.multi_label
        )
