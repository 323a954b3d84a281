"""Hand and body pose with MediaPipe's legacy solutions (``mp.solutions.pose`` / ``hands``).

The models are the TFLite files inside the ``mediapipe==0.10.14`` wheel (later releases ship
none), so this runs offline. Install it with ``pip install --no-deps mediapipe==0.10.14`` plus
the few packages it really imports (see requirements/models.txt): its declared dependencies pin
protobuf<5 and pull a second OpenCV distribution.

Limits of the legacy solutions, by design of MediaPipe:
- body pose tracks ONE person (the most prominent); ``max_people`` > 1 is refused;
- hands: up to ``max_hands`` hands, each with a handedness label and score only (no per
  keypoint confidence).

MediaPipe is imported on first use, so importing this module (e.g. for
:func:`mediapipe_model_files`) stays cheap.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edge_vision.core.poses import Poses
from edge_vision.models.files import sha256_file

MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.14"

# Model files (relative to the mediapipe package) that the two solutions load, by short name.
_MODEL_PATHS: dict[str, str] = {
    "pose_detection": "modules/pose_detection/pose_detection.tflite",
    "pose_landmark_full": "modules/pose_landmark/pose_landmark_full.tflite",
    "palm_detection_full": "modules/palm_detection/palm_detection_full.tflite",
    "palm_detection_lite": "modules/palm_detection/palm_detection_lite.tflite",
    "hand_landmark_full": "modules/hand_landmark/hand_landmark_full.tflite",
    "hand_landmark_lite": "modules/hand_landmark/hand_landmark_lite.tflite",
}

MEDIAPIPE_MODEL_SHA256: dict[str, str] = {
    "pose_detection": "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    "pose_landmark_full": "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    "palm_detection_full": "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
    "palm_detection_lite": "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
    "hand_landmark_full": "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
    "hand_landmark_lite": "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
}
"""sha256 of each file as shipped in the mediapipe 0.10.14 manylinux x86_64 wheel (PyPI)."""

# Which files each configuration loads (checked with strace on the graphs).
_FILES_USED: dict[tuple[str, int], tuple[str, str]] = {
    ("body", 1): ("pose_detection", "pose_landmark_full"),
    ("hands", 0): ("palm_detection_lite", "hand_landmark_lite"),
    ("hands", 1): ("palm_detection_full", "hand_landmark_full"),
}


class MediaPipeUnavailableError(ImportError):
    """mediapipe is not installed (or its model files are missing)."""


def _mediapipe_dir() -> Path:
    # find_spec locates the package without importing it (the import takes ~1 s).
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise MediaPipeUnavailableError(
            f"mediapipe is not installed: pip install --no-deps {MEDIAPIPE_REQUIREMENT} "
            "(and requirements/models.txt)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def mediapipe_model_files(verify: bool = False) -> dict[str, Path]:
    """The TFLite files of the installed mediapipe wheel that the pose and hands solutions use.

    Keys are short names (``pose_detection``, ``pose_landmark_full``, ``palm_detection_full``,
    ``palm_detection_lite``, ``hand_landmark_full``, ``hand_landmark_lite``); their sha256 are in
    :data:`MEDIAPIPE_MODEL_SHA256` under the same keys. ``verify`` re-hashes the files (~20 ms)
    and raises ``ValueError`` on a mismatch. Raises :class:`MediaPipeUnavailableError` when
    mediapipe or a file is missing.
    """
    root = _mediapipe_dir()
    files = {name: root / rel for name, rel in _MODEL_PATHS.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise MediaPipeUnavailableError(
            f"model files missing from the mediapipe install (needs {MEDIAPIPE_REQUIREMENT}): "
            + ", ".join(missing)
        )
    if verify:
        for name, path in files.items():
            actual = sha256_file(path)
            if actual != MEDIAPIPE_MODEL_SHA256[name]:
                raise ValueError(
                    f"{path}: sha256 {actual} differs from {MEDIAPIPE_MODEL_SHA256[name]}"
                )
    return files


def _ensure_protobuf_compat() -> None:
    """Give protobuf 5+ back ``GetPrototype``, which mediapipe 0.10.14 still calls.

    protobuf 5 removed ``MessageFactory.GetPrototype`` / ``SymbolDatabase.GetPrototype`` in
    favour of ``message_factory.GetMessageClass`` (same result). mediapipe calls it to turn
    output packets into messages (and, from C++, once at import). Added only when missing, so
    protobuf 4.x is left untouched.
    """
    from google.protobuf import message_factory, symbol_database

    def get_prototype(self: Any, descriptor: Any) -> Any:
        return message_factory.GetMessageClass(descriptor)

    for cls in (message_factory.MessageFactory, symbol_database.SymbolDatabase):
        if not hasattr(cls, "GetPrototype"):
            cls.GetPrototype = get_prototype


def _set_calculator_options(config: Any, params: Mapping[str, Any]) -> None:
    """Set ``{"node_name.field": value}`` options on graph nodes.

    Replaces ``SolutionBase._modify_calculator_options``, which reads
    ``FieldDescriptor.label`` (gone in protobuf 7). The legacy pose/hands graphs only set
    scalar thresholds on proto2-extension options, which is all this handles.
    """
    from mediapipe.python.solution_base import CALCULATOR_TO_OPTIONS

    wanted: dict[str, list[tuple[str, Any]]] = {}
    for key, value in params.items():
        node_name, _, field = key.partition(".")
        wanted.setdefault(node_name, []).append((field, value))
    for node in config.node:
        fields = wanted.pop(node.name, None)
        if fields is None:
            continue
        options_type = CALCULATOR_TO_OPTIONS.get(node.calculator)
        if options_type is None or node.node_options:
            raise NotImplementedError(f"cannot set options of graph node {node.name}")
        options = node.options.Extensions[options_type.ext]
        for field, value in fields:
            if value is None:
                options.ClearField(field)
            else:
                setattr(options, field, value)
    if wanted:
        raise ValueError(f"graph nodes not found: {sorted(wanted)}")


@functools.cache
def _solution_classes() -> tuple[type, type]:
    """mediapipe's Pose and Hands, with the protobuf 7 fixes; imports mediapipe once."""
    _ensure_protobuf_compat()
    try:
        from mediapipe.python.solutions import hands, pose
    except ImportError as e:
        raise MediaPipeUnavailableError(
            f"cannot import mediapipe ({e}); install {MEDIAPIPE_REQUIREMENT} with --no-deps "
            "and requirements/models.txt"
        ) from e

    class _Pose(pose.Pose):
        def _modify_calculator_options(self, config: Any, params: Mapping[str, Any]) -> None:
            _set_calculator_options(config, params)

    class _Hands(hands.Hands):
        def _modify_calculator_options(self, config: Any, params: Mapping[str, Any]) -> None:
            _set_calculator_options(config, params)

    return _Pose, _Hands


class PoseEstimator:
    """Body (33 BlazePose keypoints, one person) or hand (21 keypoints per hand) pose.

    ``static_image_mode=False`` (the default, for video) runs the detector only until
    something is found and then tracks it from frame to frame, smoothing body keypoints: call
    it on consecutive frames of one stream, and :meth:`reset` when the stream changes.
    ``True`` treats every image independently (detector every call; slower). Hands keep
    running the palm detector on every frame while fewer than ``max_hands`` are tracked, so
    ask for as many hands as you expect (``max_hands=1``: ~21 ms instead of ~45 ms per frame
    on a 2-core x86 CPU).

    ``mirrored`` (hands): MediaPipe labels handedness as if the image were a mirrored selfie
    view; for an ordinary camera (``mirrored=False``) its "Left" is the person's right hand,
    so the labels are swapped to give the person's own hand. Body keypoint sides are always
    the person's own.

    Not thread-safe: one estimator per stream/thread.
    """

    def __init__(
        self,
        kind: Literal["body", "hands"] = "body",
        *,
        max_people: int = 1,
        max_hands: int = 2,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        static_image_mode: bool = False,
        model_complexity: int = 1,
        mirrored: bool = False,
    ) -> None:
        if kind not in ("body", "hands"):
            raise ValueError(f"kind must be 'body' or 'hands', not {kind!r}")
        if kind == "body" and max_people != 1:
            raise ValueError(
                "MediaPipe's legacy body pose tracks a single person (the most prominent one); "
                f"max_people={max_people} is not supported. Run it per person crop for more."
            )
        if kind == "hands" and max_people != 1:
            raise ValueError("max_people applies to kind='body'; use max_hands for hands")
        if kind == "hands" and max_hands < 1:
            raise ValueError(f"max_hands must be >= 1, not {max_hands}")
        for name, v in (
            ("min_detection_confidence", min_detection_confidence),
            ("min_tracking_confidence", min_tracking_confidence),
        ):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {v}")
        if (kind, model_complexity) not in _FILES_USED:
            # Body complexity 0/2 exist upstream but are downloaded at run time, not shipped.
            shipped = sorted(c for k, c in _FILES_USED if k == kind)
            raise ValueError(
                f"model_complexity={model_complexity} for {kind}: the wheel ships {shipped}"
            )
        self.kind = kind
        self.max_hands = max_hands
        self.static_image_mode = static_image_mode
        self.model_complexity = model_complexity
        self.mirrored = mirrored
        all_files = mediapipe_model_files()
        self.model_files: dict[str, Path] = {
            n: all_files[n] for n in _FILES_USED[(kind, model_complexity)]
        }
        """The TFLite files this estimator runs (see :data:`MEDIAPIPE_MODEL_SHA256`)."""

        pose_cls, hands_cls = _solution_classes()
        if kind == "body":
            self._solution = pose_cls(
                static_image_mode=static_image_mode,
                model_complexity=model_complexity,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
        else:
            self._solution = hands_cls(
                static_image_mode=static_image_mode,
                max_num_hands=max_hands,
                model_complexity=model_complexity,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )

    def estimate(self, bgr: np.ndarray) -> Poses:
        """Poses in a BGR uint8 image (H, W, 3); keypoints in its pixel coordinates."""
        if self._solution is None:
            raise RuntimeError("PoseEstimator is closed")
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {bgr.dtype} {bgr.shape}")
        h, w = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        result = self._solution.process(rgb)
        if self.kind == "body":
            return self._body(result, w, h)
        return self._hands(result, w, h)

    def _body(self, result: Any, w: int, h: int) -> Poses:
        landmarks = result.pose_landmarks
        if landmarks is None:
            return Poses.empty("body")
        arr = np.array([(p.x, p.y, p.visibility) for p in landmarks.landmark], np.float32)
        xy = arr[:, :2] * np.array([w, h], np.float32)
        vis = arr[:, 2]
        # The legacy graph does not output its person-presence score (it only gates the
        # output on it), so the instance score is the mean keypoint visibility.
        return Poses(xy[None], vis[None], [float(vis.mean())], "body", ["person"])

    def _hands(self, result: Any, w: int, h: int) -> Poses:
        hands = result.multi_hand_landmarks or []
        if not hands:
            return Poses.empty("hand")
        scale = np.array([w, h], np.float32)
        xy = np.stack(
            [np.array([(p.x, p.y) for p in hand.landmark], np.float32) * scale for hand in hands]
        )
        labels: list[str] = []
        scores: list[float] = []
        for handedness in result.multi_handedness:
            top = handedness.classification[0]
            side = top.label.lower()  # "left"/"right" as seen in a mirrored image
            if not self.mirrored:
                side = "right" if side == "left" else "left"
            labels.append(f"{side}_hand")
            scores.append(top.score)
        # MediaPipe gives hands no per-keypoint score; the only score per hand is its
        # handedness confidence (presence was already thresholded inside the graph), so every
        # keypoint of a hand gets that value.
        inst = np.asarray(scores, np.float32)
        per_kp = np.repeat(inst[:, None], xy.shape[1], axis=1)
        return Poses(xy, per_kp, inst, "hand", labels)

    def reset(self) -> None:
        """Forget tracked instances (call when the video stream changes)."""
        if self._solution is not None:
            self._solution.reset()

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()
            self._solution = None

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
