"""The newest frame of one image topic, shared by every video output and every client.

:class:`FrameHub` is the broadcast form of ``edge_vision.core.latest.LatestSlot``: the ROS
subscription ``put``s each frame (replacing the previous one, never queueing), and each consumer
(an RTSP pusher thread, an MJPEG client, a WebRTC encoder) asks for "the newest frame after the
one I last had". A slow consumer therefore skips frames instead of backing up the subscription
or the other consumers.

Consumers also say that they are there (``acquire``/``release``, by output name): the node
subscribes to the topic only while someone watches, so nothing is decoded or encoded when
nobody does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutputFrame:
    image: np.ndarray
    """H x W x 3 BGR uint8; read-only (shared by every consumer)."""
    stamp_ns: int
    """The image header's stamp (capture time, wall clock)."""
    seq: int
    """1, 2, 3, ... in arrival order; 0 is "no frame yet"."""
    received: float
    """time.monotonic() when it arrived."""

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.image.shape[1]), int(self.image.shape[0]))


class RateMeter:
    """Events per second over a sliding window (thread-safe)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            self.total += 1
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self._window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            n = len(self._times)
            if n < 2:
                return 0.0
            span = now - self._times[0]
            return (n - 1) / span if span > 0 else 0.0


class DurationStats:
    """Recent durations (ms): median and max over the last ``size`` samples (thread-safe)."""

    def __init__(self, size: int = 120) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def summary(self) -> tuple[float, float] | None:
        """(median, max) or None when there is no sample."""
        with self._lock:
            if not self._values:
                return None
            values = sorted(self._values)
        return values[len(values) // 2], values[-1]


class Pacer:
    """At most ``max_fps`` per second: ``delay()`` says how long to wait before the next send,
    ``sent()`` records one. ``max_fps`` <= 0 means no limit.

    Sends are due on a fixed grid, so a source at the same rate with some jitter is neither
    thinned out nor delayed more and more; after a stall (a late send) the grid restarts at
    least half an interval later, so there is no catch-up burst.
    """

    def __init__(self, max_fps: float) -> None:
        self.max_fps = max_fps
        self._next: float | None = None

    def delay(self, now: float | None = None) -> float:
        if self.max_fps <= 0 or self._next is None:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, self._next - now)

    def sent(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.max_fps <= 0:
            self._next = None
            return
        interval = 1.0 / self.max_fps
        if self._next is None:
            self._next = now + interval
        else:
            self._next = max(self._next + interval, now + interval / 2)


class FrameHub:
    """Newest-frame broadcast with consumer bookkeeping (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: OutputFrame | None = None
        self._seq = 0
        self._viewers: dict[str, int] = {}
        self._listeners: list[Callable[[], None]] = []
        self.input_rate = RateMeter()
        self.replaced = 0
        """Frames that no consumer took before the next one arrived (diagnostics only)."""
        self._taken_seq = 0

    # -- producer -------------------------------------------------------------------------------
    def put(self, image: np.ndarray, stamp_ns: int) -> OutputFrame:
        if image.flags.writeable:
            image = image.view()
            image.setflags(write=False)
        now = time.monotonic()
        with self._cond:
            if self._frame is not None and self._taken_seq < self._frame.seq:
                self.replaced += 1
            self._seq += 1
            frame = OutputFrame(image, stamp_ns, self._seq, now)
            self._frame = frame
            self._cond.notify_all()
            listeners = list(self._listeners)
        self.input_rate.tick(now)
        for listener in listeners:
            listener()
        return frame

    def clear(self) -> None:
        """Forget the last frame (the subscription stopped: it would be stale when it restarts);
        sequence numbers keep counting."""
        with self._cond:
            self._frame = None

    # -- consumers ------------------------------------------------------------------------------
    def latest(self) -> OutputFrame | None:
        with self._cond:
            return self._frame

    def newer_than(self, seq: int) -> OutputFrame | None:
        """The newest frame if it is newer than ``seq``, else None (no waiting)."""
        with self._cond:
            frame = self._frame
            if frame is not None and frame.seq > seq:
                self._taken_seq = max(self._taken_seq, frame.seq)
                return frame
            return None

    def wait_newer(self, seq: int, timeout: float | None) -> OutputFrame | None:
        """Block until there is a frame newer than ``seq`` (returns it) or ``timeout`` s."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None and self._frame.seq > seq, timeout)
            frame = self._frame
            if frame is not None and frame.seq > seq:
                self._taken_seq = max(self._taken_seq, frame.seq)
                return frame
            return None

    def wake_all(self) -> None:
        """Wake every ``wait_newer`` (for shutting down)."""
        with self._cond:
            self._cond.notify_all()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """``listener()`` runs in the producer's thread after each ``put`` (keep it short)."""
        with self._cond:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # -- demand ---------------------------------------------------------------------------------
    def acquire(self, output: str) -> None:
        """A consumer of ``output`` started watching."""
        with self._cond:
            self._viewers[output] = self._viewers.get(output, 0) + 1

    def release(self, output: str) -> None:
        with self._cond:
            count = self._viewers.get(output, 0) - 1
            self._viewers[output] = max(0, count)

    def viewers(self, output: str | None = None) -> int:
        with self._cond:
            if output is not None:
                return self._viewers.get(output, 0)
            return sum(self._viewers.values())
