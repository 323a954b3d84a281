"""The frame type passed from sources to the rest of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Frame:
    """One decoded image.

    ``image`` is an H x W x C (or H x W for mono) uint8/uint16 array in ``encoding``
    (a sensor_msgs/Image encoding name such as ``bgr8``, ``rgb8``, ``mono8``).
    ``stamp_ns`` is the capture time on the wall clock (``time.time_ns()`` domain), so that it
    can be copied into a ROS header stamp and compared across processes.
    """

    image: np.ndarray
    stamp_ns: int
    encoding: str = "bgr8"
    index: int = 0
    """Sequence number from the source, starting at 0; gaps mean the source dropped frames."""
    source_pts: float | None = None
    """Presentation time in seconds within the media, when the source has one (files)."""
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
