"""The video source interface, its error types and the statistics every source keeps.

Sources know nothing about ROS. They decode frames as fast as they are asked for them; pacing
(real time versus as fast as possible) is the caller's job, helped by ``nominal_fps`` and
``Frame.source_pts``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from edge_vision.core.frame import Frame

__all__ = [
    "SourceDisconnected",
    "SourceError",
    "SourceNotFound",
    "SourceOpenError",
    "SourceStats",
    "VideoSource",
    "redact_url",
]


class SourceError(Exception):
    """Base of all video source errors. ``str(error)`` is a complete message for humans."""


class SourceNotFound(SourceError):
    """The file, folder or device does not exist; the message names exactly what is missing."""


class SourceOpenError(SourceError):
    """The source exists but cannot be used: bad URL or option, unreadable or corrupt file,
    unsupported format, server refused or did not answer."""


class SourceDisconnected(SourceError):
    """A live stream that was delivering frames stopped (connection dropped or timed out)."""


@dataclass(frozen=True, slots=True)
class SourceStats:
    """A snapshot of a source's counters, for diagnostics."""

    frames_read: int
    """Frames returned by ``read()`` since construction (across re-opens)."""
    frames_dropped: int
    """Frames the source skipped or lost, counted from gaps in ``Frame.index``."""
    reconnects: int
    """Successful reconnections after a drop (only ``ReconnectingSource`` counts these)."""
    last_error: str | None
    """Message of the most recent error, or None."""
    state: str
    """``"closed"``, ``"connected"`` or ``"reconnecting"``."""


def redact_url(url: str) -> str:
    """Return ``url`` with any ``user:password@`` part masked, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


class VideoSource(ABC):
    """A stream of decoded frames.

    Lifecycle: ``open()`` (raises a ``SourceError`` subclass on failure), any number of
    ``read()`` calls, ``close()``. A closed source may be opened again, which starts it afresh.
    ``read()`` returns None at the end of the stream and after ``close()``; it raises
    ``SourceDisconnected`` when a live stream drops (wrap live sources in
    ``ReconnectingSource`` to recover instead). The context manager opens and closes.

    Subclasses implement ``_open``, ``_read`` and ``_close``; this class keeps the counters
    (frames read, frames dropped from index gaps, last error) so every source reports them the
    same way.
    """

    def __init__(self) -> None:
        self._opened = False
        self._stats_lock = threading.Lock()
        self._frames_read = 0
        self._frames_dropped = 0
        self._last_index: int | None = None
        self._last_error: str | None = None

    # -- properties subclasses describe themselves with -------------------------------------

    @property
    @abstractmethod
    def description(self) -> str:
        """Short human description, e.g. ``file /data/a.mp4`` (credentials removed)."""

    @property
    def nominal_fps(self) -> float | None:
        """Frame rate the media declares (or was configured with); None when unknown."""
        return None

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the frames, known after ``open()``; None before."""
        return None

    @property
    def is_live(self) -> bool:
        """True for sources that produce frames in real time (cameras, network streams)."""
        return False

    @property
    def is_open(self) -> bool:
        return self._opened

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open the source; a no-op if it is already open."""
        if self._opened:
            return
        try:
            self._open()
        except SourceError as exc:
            self._record_error(exc)
            raise
        self._last_index = None
        self._opened = True

    def read(self) -> Frame | None:
        """Return the next frame, or None at the end of the stream or once closed."""
        if not self._opened:
            return None
        try:
            frame = self._read()
        except SourceError as exc:
            self._record_error(exc)
            raise
        if frame is not None:
            self._count(frame)
        return frame

    def close(self) -> None:
        """Release the source; safe to call more than once."""
        if not self._opened:
            return
        self._opened = False
        self._close()

    def __enter__(self) -> VideoSource:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"

    # -- statistics --------------------------------------------------------------------------

    @property
    def frames_read(self) -> int:
        return self._frames_read

    @property
    def frames_dropped(self) -> int:
        return self._frames_dropped

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def state(self) -> str:
        return "connected" if self._opened else "closed"

    @property
    def reconnects(self) -> int:
        return 0

    @property
    def stats(self) -> SourceStats:
        with self._stats_lock:
            return SourceStats(
                frames_read=self._frames_read,
                frames_dropped=self._frames_dropped,
                reconnects=self.reconnects,
                last_error=self._last_error,
                state=self.state,
            )

    def _count(self, frame: Frame) -> None:
        with self._stats_lock:
            self._frames_read += 1
            if self._last_index is not None and frame.index > self._last_index + 1:
                self._frames_dropped += frame.index - self._last_index - 1
            self._last_index = frame.index

    def _record_error(self, exc: BaseException) -> None:
        with self._stats_lock:
            self._last_error = str(exc)

    # -- to implement ------------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Acquire resources; raise SourceNotFound / SourceOpenError with a clear message."""

    @abstractmethod
    def _read(self) -> Frame | None:
        """Return the next frame or None at the end; only called while open."""

    @abstractmethod
    def _close(self) -> None:
        """Release resources; must not raise."""
