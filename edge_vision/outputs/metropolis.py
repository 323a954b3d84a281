"""Per-frame detections as an NVIDIA Metropolis "minimal schema" message.

The message follows DeepStream's minimal schema (nvmsgconv, ``version`` "4.0") as emitted by
the Metropolis NanoOWL service; we did not verify it against an NVIDIA consumer. One message
per frame::

    {
      "version": "4.0",
      "id": "<frame id>",
      "@timestamp": "2024-05-01T12:34:56.789Z",
      "sensorId": "<sensor id>",
      "objects": ["<id>|<left>|<top>|<right>|<bottom>|<type>|#|<confidence>", ...]
    }

- ``@timestamp``: the frame's stamp, ISO-8601 UTC with milliseconds (truncated) and ``Z``;
- ``<id>``: the track id, ``-1`` for untracked detections;
- ``<left>|<top>|<right>|<bottom>``: box corners in pixels of the detector's input image,
  rounded to 2 decimals;
- ``<type>``: the label (the class id when there are no labels); a ``|`` inside a label is
  replaced by ``/`` so that the fields stay separable;
- ``#`` separates the box from the attributes; here the only attribute is the detection
  confidence rounded to 3 decimals (``parse_object`` also reads extra attributes between
  ``#`` and the confidence, as DeepStream's richer objects carry).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from edge_vision.core.detections import Detections

__all__ = ["SCHEMA_VERSION", "format_object", "frame_message", "iso_timestamp", "parse_object"]

SCHEMA_VERSION = "4.0"


def iso_timestamp(stamp_ns: int) -> str:
    """``stamp_ns`` (ns since the Unix epoch) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC."""
    seconds, ns = divmod(int(stamp_ns), 1_000_000_000)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns // 1_000_000:03d}Z"


def _number(value: float, digits: int) -> str:
    # Shortest form ("12.5", not "12.50"); adding 0.0 turns -0.0 into 0.0.
    return str(round(float(value), digits) + 0.0)


def format_object(
    track_id: int, box: tuple[float, float, float, float], label: str, confidence: float
) -> str:
    """One ``objects`` entry."""
    left, top, right, bottom = (_number(v, 2) for v in box)
    kind = str(label).replace("|", "/")
    return f"{int(track_id)}|{left}|{top}|{right}|{bottom}|{kind}|#|{_number(confidence, 3)}"


def frame_message(
    sensor_id: str, stamp_ns: int, frame_id: int | str, detections: Detections
) -> dict[str, Any]:
    """The minimal-schema message for one frame's detections (JSON-ready dict)."""
    objects = []
    for i in range(len(detections)):
        track = -1 if detections.track_ids is None else int(detections.track_ids[i])
        label = (
            detections.labels[i] if detections.labels is not None else str(detections.class_ids[i])
        )
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        objects.append(format_object(track, (x1, y1, x2, y2), label, float(detections.scores[i])))
    return {
        "version": SCHEMA_VERSION,
        "id": str(frame_id),
        "@timestamp": iso_timestamp(stamp_ns),
        "sensorId": sensor_id,
        "objects": objects,
    }


def parse_object(text: str) -> dict[str, Any]:
    """Inverse of ``format_object``: ``{"id", "left", "top", "right", "bottom", "type",
    "confidence", "attributes"}`` (``attributes``: any fields between ``#`` and the
    confidence). ValueError when ``text`` is not an object string."""
    parts = text.split("|")
    if len(parts) < 8 or parts[6] != "#":
        raise ValueError(f"not a minimal-schema object: {text!r}")
    try:
        return {
            "id": int(parts[0]),
            "left": float(parts[1]),
            "top": float(parts[2]),
            "right": float(parts[3]),
            "bottom": float(parts[4]),
            "type": parts[5],
            "confidence": float(parts[-1]),
            "attributes": parts[7:-1],
        }
    except ValueError as exc:
        raise ValueError(f"not a minimal-schema object: {text!r} ({exc})") from exc
