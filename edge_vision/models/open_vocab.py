"""Open-vocabulary detection: a text prompt, one threshold per object, OWL-ViT / OWLv2 or NanoOWL.

Pure core (no ROS). Three parts:

- :class:`Prompt`: the objects to look for, in words, each with its own score threshold;
  :meth:`Prompt.create` and :meth:`Prompt.parse` validate and refuse with a reason
  (:class:`PromptError`): no objects, an empty object, the same object twice, more objects than
  allowed, threshold counts that differ from the object count (one threshold for all is fine),
  thresholds outside [0, 1].
- :class:`OwlDetector`: OWL-ViT or OWLv2 through Hugging Face transformers, from a hub id or a
  local folder (what ``save_pretrained`` writes). The model is run in two halves: the text
  encoder once per prompt (its embeddings are cached, keyed by the prompt's objects) and the
  image encoder plus the class and box heads once per frame, so a frame never pays for the text.
- :class:`NanoOwlDetector`: a thin adapter over NVIDIA's NanoOWL (TensorRT image encoder on
  Jetson); it raises a clear :class:`ModelLoadError` where NanoOWL is not installed.

Boxes come back in pixels of the image given, as the project's :class:`Detections` with
``class_ids`` = the object's index in the prompt and ``labels`` = the object text.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_vision.core.detections import Detections
from edge_vision.models.decoders import nms
from edge_vision.models.errors import ModelLoadError
from edge_vision.models.preprocess import as_bgr

DEFAULT_THRESHOLD = 0.1
"""Threshold for objects given without one (OWL-ViT's scores are low: 0.1 is its usual cut)."""

DEVICES = ("cpu", "cuda", "jetson")
"""``cpu``/``cuda``: PyTorch through transformers; ``jetson``: NanoOWL (TensorRT image encoder)."""

OWL_MODEL_TYPES = ("owlvit", "owlv2")
_EMBEDDING_CACHE_SIZE = 32  # prompts remembered per model; switching back costs no text pass


class PromptError(ValueError):
    """An invalid prompt; the message says what is wrong. The running prompt stays."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """Objects to detect, in words, each with its minimum score (immutable: swapped whole)."""

    objects: tuple[str, ...]
    thresholds: tuple[float, ...]

    @classmethod
    def create(
        cls,
        objects: Sequence[str],
        thresholds: Sequence[float] = (),
        *,
        max_objects: int | None = None,
        default_threshold: float = DEFAULT_THRESHOLD,
    ) -> Prompt:
        """A validated prompt. ``thresholds``: one per object, one for all, or none (all get
        ``default_threshold``). Objects are stripped of surrounding spaces. PromptError if bad."""
        names = [str(o).strip() for o in objects]
        if not names:
            raise PromptError("the prompt has no objects: give at least one")
        for i, name in enumerate(names, 1):
            if not name:
                raise PromptError(f"object {i} of {len(names)} is empty")
        seen: set[str] = set()
        for name in names:
            if name in seen:
                # The object text is the class id on the wire: two equal ones are ambiguous.
                raise PromptError(f"object {name!r} is listed twice")
            seen.add(name)
        if max_objects is not None and len(names) > max_objects:
            raise PromptError(f"{len(names)} objects, but at most {max_objects} are allowed")
        values = [float(t) for t in thresholds]
        if not values:
            values = [default_threshold]
        if len(values) == 1:
            values = values * len(names)
        elif len(values) != len(names):
            raise PromptError(
                f"{len(values)} thresholds for {len(names)} objects: give one per object, "
                "or one for all"
            )
        for i, value in enumerate(values, 1):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise PromptError(f"threshold {i} ({value:g}) is outside [0, 1]")
        return cls(tuple(names), tuple(values))

    @classmethod
    def parse(
        cls,
        objects: str,
        thresholds: str | None = None,
        *,
        max_objects: int | None = None,
        default_threshold: float = DEFAULT_THRESHOLD,
    ) -> Prompt:
        """``Prompt.parse("a person, a hat", "0.1,0.2")``: comma-separated objects and
        thresholds (thresholds optional: one for all, or none for the default)."""
        names = objects.split(",")
        values: list[float] = []
        if thresholds is not None and thresholds.strip():
            for i, item in enumerate(thresholds.split(","), 1):
                try:
                    values.append(float(item))
                except ValueError:
                    raise PromptError(f"threshold {i} ({item.strip()!r}) is not a number") from None
        return cls.create(
            names, values, max_objects=max_objects, default_threshold=default_threshold
        )

    def __len__(self) -> int:
        return len(self.objects)

    def __str__(self) -> str:
        return ", ".join(f"{o} ({t:g})" for o, t in zip(self.objects, self.thresholds, strict=True))


# ------------------------------------------------------------------------------------------------
# Decoding shared by the backends
# ------------------------------------------------------------------------------------------------


def decode_boxes(
    logits: np.ndarray,
    boxes_cxcywh: np.ndarray,
    prompt: Prompt,
    scale_xy: tuple[float, float],
    image_size: tuple[int, int],
    *,
    nms_iou: float = 1.0,
    max_detections: int = 100,
) -> Detections:
    """OWL head outputs for one image -> :class:`Detections`.

    ``logits`` (P, Q): one row per candidate box, one column per prompt object;
    ``boxes_cxcywh`` (P, 4) normalised to the model input. Each box takes its best object (as
    transformers' post-processing does) and is kept when its score (sigmoid) reaches that
    object's threshold. ``scale_xy`` turns normalised coordinates into pixels; boxes are clipped
    to ``image_size`` (width, height). ``nms_iou`` < 1 merges overlapping boxes of one object.
    """
    if logits.shape[1] != len(prompt):
        raise ValueError(f"{logits.shape[1]} logit columns for a prompt of {len(prompt)}")
    # clipped: exp overflows past |x| ~ 709; sigmoid is 0 or 1 to float64 precision long before
    scores_all = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -60.0, 60.0)))
    best = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(best)), best]
    keep = scores >= np.asarray(prompt.thresholds, np.float64)[best]
    rows = np.flatnonzero(keep)
    cx, cy, w, h = (boxes_cxcywh[rows, i].astype(np.float64) for i in range(4))
    sx, sy = scale_xy
    xyxy = np.stack([(cx - w / 2) * sx, (cy - h / 2) * sy, (cx + w / 2) * sx, (cy + h / 2) * sy], 1)
    width, height = image_size
    xyxy = np.clip(xyxy, 0.0, [width, height, width, height])
    kept_scores = scores[rows]
    kept_ids = best[rows]
    order = nms(
        xyxy,
        kept_scores,
        nms_iou if nms_iou < 1.0 else 1.0 + 1e-9,  # IoU never exceeds 1: nothing suppressed
        class_ids=kept_ids,
        max_detections=max_detections,
    )
    return Detections(
        xyxy[order],
        kept_scores[order],
        kept_ids[order],
        labels=[prompt.objects[i] for i in kept_ids[order]],
    )


# ------------------------------------------------------------------------------------------------
# OWL-ViT / OWLv2 through transformers
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and its torchvision fallback notice while loading."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


class OwlDetector:
    """OWL-ViT / OWLv2 (transformers) with a text-embedding cache keyed by the prompt.

    ``text_encoder_runs`` counts real passes through the text model (a forward hook on it):
    it grows once per new prompt, never per frame.
    """

    max_objects: int | None = None
    """OWL has no limit on queries (each object is one column of the class head)."""

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, name: str, device: str):
        import torch

        self.name = name
        self.device = device
        self.model = model
        self._torch = torch
        self._tokenizer = tokenizer
        config = model.config
        self.model_type: str = config.model_type
        self.core = getattr(model, model.base_model_prefix)  # OwlViTModel / Owlv2Model
        self.max_text_tokens = int(config.text_config.max_position_embeddings)
        # OWLv2 pads the image to a square (bottom/right) before resizing; OWL-ViT stretches.
        self.square_pad = bool(getattr(image_processor, "do_pad", self.model_type == "owlv2"))
        size = image_processor.size
        self.input_size = (int(size["width"]), int(size["height"]))
        self._rescale = float(getattr(image_processor, "rescale_factor", 1 / 255))
        self._mean = np.asarray(image_processor.image_mean, np.float32).reshape(1, 1, 3)
        self._std = np.asarray(image_processor.image_std, np.float32).reshape(1, 1, 3)
        self._cache: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.text_encoder_runs = 0
        self.core.text_model.register_forward_hook(self._count_text_pass)

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | Path, device: str = "cpu") -> OwlDetector:
        """From a hub id (``google/owlvit-base-patch32``, ``google/owlv2-base-patch16-ensemble``)
        or a local folder; ModelLoadError with the reason when it cannot."""
        if device not in ("cpu", "cuda"):
            raise ModelLoadError(f"device {device!r}: OWL through transformers runs on cpu or cuda")
        import torch
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForZeroShotObjectDetection,
            AutoTokenizer,
        )

        source = str(source)
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError("device cuda: this PyTorch has no CUDA device")
        if _looks_like_path(source):
            folder = Path(source).expanduser()
            if not folder.is_dir():
                raise ModelLoadError(f"{source}: no such model folder")
            if not (folder / "config.json").is_file():
                raise ModelLoadError(f"{source}: not a model folder (no config.json)")
            source = str(folder)
        try:
            with _quiet_transformers():
                config = AutoConfig.from_pretrained(source)
                if config.model_type not in OWL_MODEL_TYPES:
                    raise ModelLoadError(
                        f"{source}: model type {config.model_type!r} is not OWL-ViT or OWLv2"
                    )
                model = AutoModelForZeroShotObjectDetection.from_pretrained(source)
                tokenizer = AutoTokenizer.from_pretrained(source)
                image_processor = AutoImageProcessor.from_pretrained(source)
        except ModelLoadError:
            raise
        except Exception as exc:  # missing files, no network for a hub id, corrupt weights
            raise ModelLoadError(f"cannot load {source!r}: {type(exc).__name__}: {exc}") from exc
        model = model.to(device).eval()
        return cls(model, tokenizer, image_processor, name=source, device=device)

    # -- prompts ----------------------------------------------------------------------------------
    def _count_text_pass(self, *_: Any) -> None:
        self.text_encoder_runs += 1

    def _tokenize(self, objects: Sequence[str]) -> dict[str, Any]:
        return self._tokenizer(
            list(objects), padding="max_length", truncation=False, return_tensors="pt"
        )

    def check_prompt(self, prompt: Prompt) -> None:
        """PromptError when an object is longer than the text model reads (no silent cut)."""
        for obj in prompt.objects:
            n = len(self._tokenizer(obj, verbose=False)["input_ids"])
            if n > self.max_text_tokens:
                raise PromptError(
                    f"object {obj!r} is {n} tokens long; this model reads at most "
                    f"{self.max_text_tokens} (with the start and end tokens)"
                )

    def _encode_text(self, objects: Sequence[str]) -> Any:
        tokens = self._tokenize(objects)
        torch = self._torch
        with torch.inference_mode():
            out = self.core.get_text_features(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            )
        # transformers 5 returns the pooled, projected embeddings in pooler_output
        feats = getattr(out, "pooler_output", out)
        return feats / torch.linalg.norm(feats, dim=-1, keepdim=True)

    def text_embeddings(self, prompt: Prompt) -> Any:
        """(Q, D) query embeddings of the prompt's objects, computed once per object list."""
        key = prompt.objects
        with self._lock:  # one pass per prompt even when two threads ask at once
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            self.check_prompt(prompt)
            embeds = self._encode_text(key)
            self._cache[key] = embeds
            while len(self._cache) > _EMBEDDING_CACHE_SIZE:
                self._cache.popitem(last=False)
            return embeds

    # -- frames -----------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> tuple[Any, tuple[float, float]]:
        """BGR frame -> (1, 3, H, W) input tensor and the pixel scale of normalised boxes.

        The processor's own steps (resize, optional square padding, rescale, normalise) done
        with OpenCV on the frame: transformers' PIL path costs several times more per frame.
        """
        bgr = as_bgr(image)
        h, w = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.square_pad:
            side = max(h, w)
            padded = np.zeros((side, side, 3), np.uint8)
            padded[:h, :w] = rgb
            rgb, scale = padded, (float(side), float(side))
        else:
            scale = (float(w), float(h))
        out_w, out_h = self.input_size
        shrink = rgb.shape[1] > out_w or rgb.shape[0] > out_h
        interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        resized = cv2.resize(rgb, (out_w, out_h), interpolation=interp)
        x = (resized.astype(np.float32) * self._rescale - self._mean) / self._std
        tensor = self._torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
        return tensor.to(self.device), scale

    def heads(self, pixel_values: Any, query_embeds: Any) -> tuple[np.ndarray, np.ndarray]:
        """Image encoder + class and box heads with given query embeddings -> (logits (P, Q),
        boxes (P, 4) cxcywh normalised). No text pass."""
        torch = self._torch
        with torch.inference_mode():
            feature_map = self.model.image_embedder(pixel_values=pixel_values)[0]
            b, ph, pw, d = feature_map.shape
            feats = feature_map.reshape(b, ph * pw, d)
            logits, _ = self.model.class_predictor(feats, query_embeds[None], None)
            boxes = self.model.box_predictor(feats, feature_map)
        return logits[0].float().cpu().numpy(), boxes[0].float().cpu().numpy()

    def detect(
        self,
        image: np.ndarray,
        prompt: Prompt,
        *,
        nms_iou: float = 1.0,
        max_detections: int = 100,
        use_cache: bool = True,
    ) -> Detections:
        """Detect ``prompt``'s objects in a BGR frame. ``use_cache=False`` re-encodes the text
        on every call (what running the whole model per frame costs; for benchmarks)."""
        pixel_values, scale = self.preprocess(image)
        if use_cache:
            queries = self.text_embeddings(prompt)
        else:
            self.check_prompt(prompt)
            queries = self._encode_text(prompt.objects)
        logits, boxes = self.heads(pixel_values, queries)
        h, w = image.shape[:2]
        return decode_boxes(
            logits,
            boxes,
            prompt,
            scale,
            (w, h),
            nms_iou=nms_iou,
            max_detections=max_detections,
        )


# ------------------------------------------------------------------------------------------------
# NanoOWL (TensorRT on Jetson)
# ------------------------------------------------------------------------------------------------


def nanoowl_available() -> bool:
    """Whether NanoOWL is importable (checked without importing it: that starts CUDA)."""
    return importlib.util.find_spec("nanoowl") is not None


class NanoOwlDetector:
    """UNTESTED thin adapter over NVIDIA's NanoOWL ``OwlPredictor`` (github.com/NVIDIA-AI-IOT/
    nanoowl): OWL-ViT with a TensorRT image-encoder engine, for Jetson. The build machines have
    no GPU, TensorRT or NanoOWL, so it is written against NanoOWL's documented API
    (``encode_text``, ``predict(image, text, text_encodings, threshold, pad_square)``) and its
    test skips. Text encodings are cached per prompt like :class:`OwlDetector`'s."""

    max_objects: int | None = None
    max_text_tokens = 16  # the OWL-ViT checkpoints NanoOWL supports

    def __init__(self, model: str, image_encoder_engine: str) -> None:
        if not nanoowl_available():
            raise ModelLoadError(
                "device jetson needs NVIDIA's NanoOWL (github.com/NVIDIA-AI-IOT/nanoowl) with "
                "TensorRT, which is not installed here; use device cpu or cuda"
            )
        if not image_encoder_engine or not Path(image_encoder_engine).is_file():
            raise ModelLoadError(
                f"device jetson: image encoder engine {image_encoder_engine!r} not found "
                "(build one with NanoOWL's build_image_encoder_engine)"
            )
        from nanoowl.owl_predictor import OwlPredictor

        self.name = model
        self.device = "jetson"
        self._predictor = OwlPredictor(model, image_encoder_engine=image_encoder_engine)
        self._cache: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.text_encoder_runs = 0

    def check_prompt(self, prompt: Prompt) -> None:
        tokenizer = self._predictor.processor.tokenizer
        for obj in prompt.objects:
            if len(tokenizer(obj)["input_ids"]) > self.max_text_tokens:
                raise PromptError(f"object {obj!r} is longer than {self.max_text_tokens} tokens")

    def text_embeddings(self, prompt: Prompt) -> Any:
        with self._lock:
            if prompt.objects not in self._cache:
                self.check_prompt(prompt)
                self._cache[prompt.objects] = self._predictor.encode_text(list(prompt.objects))
                self.text_encoder_runs += 1
                while len(self._cache) > _EMBEDDING_CACHE_SIZE:
                    self._cache.popitem(last=False)
            return self._cache[prompt.objects]

    def detect(
        self,
        image: np.ndarray,
        prompt: Prompt,
        *,
        nms_iou: float = 1.0,
        max_detections: int = 100,
        use_cache: bool = True,
    ) -> Detections:
        import PIL.Image

        bgr = as_bgr(image)
        pil = PIL.Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        encodings = self.text_embeddings(prompt) if use_cache else None
        out = self._predictor.predict(
            image=pil,
            text=list(prompt.objects),
            text_encodings=encodings,
            threshold=list(prompt.thresholds),
            pad_square=False,
        )
        xyxy = out.boxes.float().cpu().numpy().reshape(-1, 4)
        scores = out.scores.float().cpu().numpy().reshape(-1)
        ids = out.labels.cpu().numpy().astype(np.int32).reshape(-1)
        order = nms(xyxy, scores, nms_iou if nms_iou < 1.0 else 1.0 + 1e-9, ids, max_detections)
        return Detections(
            xyxy[order], scores[order], ids[order], labels=[prompt.objects[i] for i in ids[order]]
        )


OpenVocabDetector = OwlDetector | NanoOwlDetector


def load_open_vocab(
    model: str, device: str = "cpu", image_encoder_engine: str = ""
) -> OpenVocabDetector:
    """The detector for ``device``: OWL-ViT/OWLv2 via transformers (cpu, cuda) or NanoOWL
    (jetson). ModelLoadError with the reason when it cannot load."""
    if device == "jetson":
        return NanoOwlDetector(model, image_encoder_engine)
    if device not in DEVICES:
        raise ModelLoadError(f"unknown device {device!r}; one of {', '.join(DEVICES)}")
    return OwlDetector.load(model, device)
