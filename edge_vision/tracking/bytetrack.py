"""ByteTrack via roboflow ``supervision`` (``sv.ByteTrack``: Kalman filter + two-stage
high/low-score association, the reference algorithm), adapted to :class:`Detections`.
"""

from __future__ import annotations

import numpy as np

from edge_vision.core.detections import Detections


class ByteTracker:
    """Wraps ``supervision.ByteTrack``.

    Association is class-agnostic (as in the ByteTrack paper); each returned row keeps the
    class of its detection. :meth:`update` returns the input rows that belong to activated
    tracks (a subset, in tracker order), with ``track_ids`` set.
    Parameters are supervision's: ``track_activation_threshold`` (score splitting high/low
    detections), ``lost_track_buffer`` (frames a lost track is kept, at ``frame_rate`` 30),
    ``minimum_matching_threshold``, ``frame_rate`` and ``minimum_consecutive_frames``.
    """

    def __init__(self, **params: float) -> None:
        import supervision as sv  # imported here: only users of this tracker pay for it

        self._sv = sv
        self._params = params
        self._tracker = sv.ByteTrack(**params)  # type: ignore[arg-type]

    def reset(self) -> None:
        self._tracker = self._sv.ByteTrack(**self._params)  # type: ignore[arg-type]

    def update(self, detections: Detections) -> Detections:
        n = len(detections)
        sv_dets = self._sv.Detections(
            xyxy=detections.xyxy.astype(np.float32).reshape(n, 4),
            confidence=detections.scores,
            class_id=detections.class_ids,
            # Carry the row index through so labels etc. come from the caller's object.
            data={"row": np.arange(n)},
        )
        tracked = self._tracker.update_with_detections(sv_dets)
        if len(tracked) == 0:
            out = detections[np.zeros(0, np.intp)]
            out.track_ids = np.zeros(0, np.int64)
            return out
        out = detections[np.asarray(tracked.data["row"], np.intp)]
        out.track_ids = np.asarray(tracked.tracker_id, np.int64)
        return out
