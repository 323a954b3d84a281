"""Keep a live source running across drops: reconnect with exponential backoff."""

from __future__ import annotations

import logging
import random
import threading
import time

from edge_vision.core.frame import Frame
from edge_vision.sources.base import SourceError, SourceOpenError, VideoSource

_log = logging.getLogger(__name__)

# How often a backoff wait looks at an external stop event (close() wakes it at once).
_STOP_POLL_S = 0.2


class ReconnectingSource(VideoSource):
    """Wraps a live source; when it drops, closes it and opens it again until it works.

    The first ``open()`` raises like the wrapped source does (a wrong URL should fail loudly)
    unless ``retry_initial=True``, in which case ``open()`` returns at once and ``read()``
    keeps trying to connect. After that, any ``SourceError`` from the wrapped source
    (``SourceDisconnected``, or ``SourceOpenError``/``SourceNotFound`` while reconnecting) is
    absorbed: ``read()`` blocks, retrying after ``initial_backoff_s``, then ``* backoff_factor``
    each failure up to ``max_backoff_s``, each wait varied by +-``jitter`` (a fraction) so that
    many clients do not hammer a recovering server in step.

    ``read()`` returns None only when the wrapped source reports a true end (never for a live
    stream), after ``close()`` (which may be called from another thread and wakes a blocked
    ``read()`` promptly), or once ``stop_event`` is set (noticed within about
    ``_STOP_POLL_S`` while waiting, or when the wrapped source returns its next frame or
    error). ``Frame.index`` keeps counting across reconnections.

    ``state`` is ``"connected"``, ``"reconnecting"`` or ``"closed"``; ``reconnects`` counts
    successful reconnections, ``reconnect_attempts`` all tries.
    """

    def __init__(
        self,
        source: VideoSource,
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        backoff_factor: float = 2.0,
        jitter: float = 0.1,
        retry_initial: bool = False,
        stop_event: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        if initial_backoff_s <= 0 or max_backoff_s < initial_backoff_s:
            raise SourceOpenError(
                "reconnect backoff needs 0 < initial_backoff_s <= max_backoff_s, got "
                f"{initial_backoff_s} and {max_backoff_s}"
            )
        if backoff_factor < 1:
            raise SourceOpenError(f"backoff_factor must be >= 1, got {backoff_factor}")
        if not 0 <= jitter < 1:
            raise SourceOpenError(f"jitter must be in [0, 1), got {jitter}")
        self._inner = source
        self._initial = initial_backoff_s
        self._max = max_backoff_s
        self._factor = backoff_factor
        self._jitter = jitter
        self._retry_initial = retry_initial
        self._external_stop = stop_event
        self._rng = rng or random.Random()
        self._closing = threading.Event()
        self._connected = False
        self._ever_connected = False
        self._reconnects = 0
        self._attempts = 0
        self._index_offset = 0
        self._next_index = 0
        self._dropped_at: float | None = None
        self._last_outage_s: float | None = None

    # -- delegated description ---------------------------------------------------------------

    @property
    def inner(self) -> VideoSource:
        return self._inner

    @property
    def description(self) -> str:
        return self._inner.description

    @property
    def nominal_fps(self) -> float | None:
        return self._inner.nominal_fps

    @property
    def size(self) -> tuple[int, int] | None:
        return self._inner.size

    @property
    def is_live(self) -> bool:
        return self._inner.is_live

    # -- reconnect statistics ----------------------------------------------------------------

    @property
    def state(self) -> str:
        if not self.is_open:
            return "closed"
        return "connected" if self._connected else "reconnecting"

    @property
    def reconnects(self) -> int:
        return self._reconnects

    @property
    def reconnect_attempts(self) -> int:
        return self._attempts

    @property
    def last_outage_s(self) -> float | None:
        """Seconds from the last detected drop until frames flowed again."""
        return self._last_outage_s

    def _stopped(self) -> bool:
        return self._closing.is_set() or (
            self._external_stop is not None and self._external_stop.is_set()
        )

    # -- VideoSource -------------------------------------------------------------------------

    def _open(self) -> None:
        self._closing = threading.Event()
        self._connected = False
        self._index_offset = self._next_index  # a re-opened source keeps counting
        try:
            self._inner.open()
        except SourceError as exc:
            if not self._retry_initial:
                raise
            self._record_error(exc)
            _log.warning("%s; will keep retrying", exc)
            self._dropped_at = time.monotonic()
            return
        self._connected = True
        self._ever_connected = True

    def _read(self) -> Frame | None:
        while not self._stopped():
            if not self._connected and not self._connect_with_backoff():
                return None
            try:
                frame = self._inner.read()
            except SourceError as exc:
                self._on_drop(exc)
                continue
            if frame is None:
                # A live inner source returns None only when closed, i.e. by us; a finite
                # one (a file behind the wrapper) really ended.
                return None
            if self._dropped_at is not None:
                self._last_outage_s = time.monotonic() - self._dropped_at
                self._dropped_at = None
            frame.index += self._index_offset
            self._next_index = frame.index + 1
            return frame
        return None

    def _close(self) -> None:
        self._closing.set()
        self._connected = False
        self._inner.close()

    # -- internals ---------------------------------------------------------------------------

    def _on_drop(self, exc: SourceError) -> None:
        self._record_error(exc)
        self._connected = False
        self._dropped_at = time.monotonic()
        _log.warning("%s; reconnecting", exc)
        self._inner.close()

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if stopped meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._stopped():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            step = remaining if self._external_stop is None else min(remaining, _STOP_POLL_S)
            self._closing.wait(step)
        return False

    def _connect_with_backoff(self) -> bool:
        delay = self._initial
        while True:
            spread = 1.0 + self._rng.uniform(-self._jitter, self._jitter)
            if not self._wait(delay * spread):
                return False
            self._attempts += 1
            try:
                self._inner.close()
                self._inner.open()
            except SourceError as exc:
                self._record_error(exc)
                _log.debug("%s: reconnect attempt %d failed: %s", self, self._attempts, exc)
                delay = min(delay * self._factor, self._max)
                continue
            if self._stopped():
                # close() ran while open() was in progress and found nothing to close.
                self._inner.close()
                return False
            self._connected = True
            self._index_offset = self._next_index
            if self._ever_connected:
                self._reconnects += 1
                _log.info("%s: reconnected (attempt %d)", self.description, self._attempts)
            self._ever_connected = True
            return True
