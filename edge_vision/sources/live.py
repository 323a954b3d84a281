"""Live sources (RTSP streams, V4L2 cameras) read through PyAV on a background thread."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import stat
import threading
import time
from urllib.parse import urlsplit

import av
import av.error

from edge_vision.core.frame import Frame
from edge_vision.sources._av import describe_av_error, is_timeout, stream_fps, to_bgr
from edge_vision.sources.base import (
    SourceDisconnected,
    SourceError,
    SourceNotFound,
    SourceOpenError,
    VideoSource,
    redact_url,
)

_log = logging.getLogger(__name__)


class LiveAVSource(VideoSource):
    """Common part of the PyAV live sources.

    A daemon thread demuxes and decodes continuously and keeps only the newest
    ``queue_size`` frames, so a slow consumer gets fresh frames instead of an ever-growing
    backlog (the classic RTSP latency trap); frames it overwrites leave gaps in
    ``Frame.index`` and count as dropped. The thread also makes ``close()`` safe from any
    thread: it only signals, and a ``read()`` blocked in another thread returns None at once.
    FFmpeg itself is left to finish its current call (bounded by the read timeout) and the
    thread closes the container.

    ``open()`` connects and waits for the first decoded frame (so ``size`` is known and a
    source that connects but sends nothing fails in ``open()``). Once running, the end of the
    stream or a read error makes ``read()`` raise ``SourceDisconnected``.
    """

    def __init__(
        self,
        url: str,
        *,
        av_format: str | None = None,
        av_options: dict[str, str] | None = None,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 2.0,
        queue_size: int = 1,
    ) -> None:
        super().__init__()
        if open_timeout_s <= 0 or read_timeout_s <= 0:
            raise SourceOpenError("open_timeout_s and read_timeout_s must be positive")
        if queue_size < 1:
            raise SourceOpenError(f"queue_size must be >= 1, got {queue_size}")
        self._url = url
        self._av_format = av_format
        self._av_options = dict(av_options or {})
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._queue: collections.deque[Frame] = collections.deque(maxlen=queue_size)
        self._stop = threading.Event()
        self._error: SourceError | None = None
        self._thread: threading.Thread | None = None
        self._fps: float | None = None
        self._size: tuple[int, int] | None = None

    @property
    def is_live(self) -> bool:
        return True

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    @property
    def url(self) -> str:
        return self._url

    # -- to specialise -----------------------------------------------------------------------

    def _map_open_error(self, exc: av.error.FFmpegError) -> SourceError:
        return SourceOpenError(f"cannot open {self.description}: {describe_av_error(exc)}")

    def _check_before_open(self) -> None:
        """Cheap checks that give a clearer error than FFmpeg would (e.g. missing device)."""

    # -- VideoSource -------------------------------------------------------------------------

    def _open(self) -> None:
        self._check_before_open()
        started = time.monotonic()
        try:
            container = av.open(
                self._url,
                format=self._av_format,
                options=self._av_options,
                # Measured: FFmpeg's RTSP demuxer gives up after twice PyAV's read timeout
                # (it waits once more after the first interrupt), so ask for half.
                timeout=(self._open_timeout_s, self._read_timeout_s / 2),
            )
        except av.error.FFmpegError as exc:
            if time.monotonic() - started >= 0.9 * self._open_timeout_s:
                # FFmpeg reports an interrupted handshake as whatever it was parsing
                # ("invalid data"), which would send the user looking in the wrong place.
                raise SourceOpenError(
                    f"cannot open {self.description}: no answer within {self._open_timeout_s:g} s"
                ) from None
            raise self._map_open_error(exc) from None
        if not container.streams.video:
            container.close()
            raise SourceOpenError(f"{self.description} has no video stream")
        stream = container.streams.video[0]
        # Slice threads only: frame threading would hold back several frames (latency).
        stream.thread_type = "SLICE"
        self._fps = stream_fps(stream)
        stop = threading.Event()
        with self._cond:
            self._stop = stop
            self._queue = collections.deque(maxlen=self._queue_size)
            self._error = None
        thread = threading.Thread(
            target=self._run, args=(container, stream, stop), name=f"src:{self.description}"
        )
        thread.daemon = True
        self._thread = thread
        thread.start()
        remaining = max(0.1, self._open_timeout_s - (time.monotonic() - started))
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._error is not None, remaining)
            first = self._queue[0] if self._queue else None
            error = self._error
        if first is None:
            self._shutdown()
            if error is None:
                raise SourceOpenError(
                    f"{self.description} connected but sent no video frame within "
                    f"{self._open_timeout_s:g} s"
                )
            raise SourceOpenError(str(error))
        self._size = (first.width, first.height)

    def _run(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        stop: threading.Event,
    ) -> None:
        index = 0
        error: SourceError
        try:
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                for av_frame in packet.decode():
                    frame = Frame(
                        image=to_bgr(av_frame),
                        stamp_ns=time.time_ns(),
                        index=index,
                        source_pts=av_frame.time,
                    )
                    index += 1
                    with self._cond:
                        self._queue.append(frame)
                        self._cond.notify_all()
            error = SourceDisconnected(f"{self.description}: stream ended (connection closed)")
        except av.error.FFmpegError as exc:
            if is_timeout(exc):
                reason = f"no data for {self._read_timeout_s:g} s"
            else:
                reason = describe_av_error(exc)
            error = SourceDisconnected(f"{self.description}: stream lost: {reason}")
        except Exception as exc:  # keep the reader informed whatever went wrong
            _log.exception("%s: reader thread failed", self.description)
            error = SourceDisconnected(f"{self.description}: reader failed: {exc}")
        finally:
            with contextlib.suppress(av.error.FFmpegError):
                container.close()
        if not stop.is_set():
            with self._cond:
                self._error = error
                self._cond.notify_all()

    def _read(self) -> Frame | None:
        with self._cond:
            stop = self._stop
            # Periodic wake-ups are only a safety net; close() and the reader thread notify.
            while not self._queue and self._error is None and not stop.is_set():
                self._cond.wait(1.0)
            if stop.is_set():
                return None
            if self._queue:
                return self._queue.popleft()
            assert self._error is not None
            raise self._error

    def _shutdown(self, join_timeout_s: float | None = None) -> None:
        with self._cond:
            self._stop.set()
            self._queue.clear()
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._read_timeout_s + 0.5 if join_timeout_s is None else join_timeout_s)
            if thread.is_alive():
                _log.debug("%s: reader still inside FFmpeg; it will exit on its own", self)

    def _close(self) -> None:
        self._shutdown()


class RtspSource(LiveAVSource):
    """An RTSP stream (``rtsp://[user:pass@]host[:port]/path``), tuned for low latency.

    Options passed to FFmpeg: ``rtsp_transport`` (``tcp`` by default: no packet loss on busy
    networks, works through NAT), ``flags=low_delay``, a socket timeout and PyAV's read
    timeout (``read_timeout_s``) so that a silent server is noticed within about that time,
    and a short stream probe so ``open()`` neither analyses for seconds nor leaves a backlog.
    ``extra_options`` are added verbatim. A connection that drops raises
    ``SourceDisconnected`` from ``read()``; wrap in ``ReconnectingSource`` to recover.
    Credentials in the URL never appear in messages.
    """

    def __init__(
        self,
        url: str,
        *,
        transport: str = "tcp",
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 2.0,
        queue_size: int = 1,
        extra_options: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
            raise SourceOpenError(
                f"not an RTSP URL: {redact_url(url)!r} (expected rtsp://host[:port]/path)"
            )
        if transport not in ("tcp", "udp", "udp_multicast", "http"):
            raise SourceOpenError(
                f"unknown RTSP transport {transport!r}; use tcp, udp, udp_multicast or http"
            )
        options = {
            "rtsp_transport": transport,
            "flags": "low_delay",
            # Socket I/O timeout in microseconds: a server that stops answering is an error.
            "timeout": str(int(read_timeout_s * 1_000_000)),
            "max_delay": "500000",
            # A short probe: with FFmpeg's defaults open() took 1-2 s and the packets read
            # while probing became a backlog of 0.8-1.8 s. Not "fflags=nobuffer": it
            # discards the probed packets, usually the keyframe sent on connect, so decoding
            # could only start a whole GOP later.
            "probesize": "32768",
            "analyzeduration": "100000",
        }
        options.update(extra_options or {})
        super().__init__(
            url,
            av_format="rtsp",
            av_options=options,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
            queue_size=queue_size,
        )

    @property
    def description(self) -> str:
        return f"RTSP stream {redact_url(self.url)}"

    def _map_open_error(self, exc: av.error.FFmpegError) -> SourceError:
        where = redact_url(self.url)
        if isinstance(exc, av.error.ConnectionRefusedError):
            reason = "connection refused (is the RTSP server running on that port?)"
        elif isinstance(exc, av.error.HTTPNotFoundError):
            reason = "the server has no stream at that path (404 Not Found)"
        elif isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
            reason = "the server refused access (wrong or missing user/password)"
        elif is_timeout(exc):
            reason = f"no answer within {self._open_timeout_s:g} s"
        elif isinstance(exc, av.error.InvalidDataError):
            reason = "the server's answer is not a playable stream"
        else:
            reason = describe_av_error(exc)
        return SourceOpenError(f"cannot open RTSP stream {where}: {reason}")


class V4L2Source(LiveAVSource):
    """A Video4Linux2 camera (``/dev/videoN``) read through FFmpeg's v4l2 demuxer.

    ``width``/``height``/``fps``/``input_format`` (e.g. ``"mjpeg"``) are requests passed to
    the driver; the camera may choose differently, and ``size``/``nominal_fps`` report what
    it chose.

    Tested here: argument checks and the clean ``SourceNotFound`` / ``SourceOpenError`` for a
    missing or non-device path. NOT tested (no camera or v4l2loopback on the build machines):
    actually streaming from a device; that path is the same PyAV live reader as RTSP.
    """

    def __init__(
        self,
        device: str = "/dev/video0",
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        input_format: str | None = None,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 2.0,
        queue_size: int = 1,
    ) -> None:
        if (width is None) != (height is None):
            raise SourceOpenError("give both width and height for a V4L2 camera, or neither")
        options: dict[str, str] = {}
        if width is not None and height is not None:
            options["video_size"] = f"{width}x{height}"
        if fps is not None:
            options["framerate"] = f"{fps:g}"
        if input_format:
            options["input_format"] = input_format
        super().__init__(
            device,
            av_format="v4l2",
            av_options=options,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
            queue_size=queue_size,
        )

    @property
    def description(self) -> str:
        return f"V4L2 camera {self.url}"

    def _check_before_open(self) -> None:
        device = self.url
        try:
            mode = os.stat(device).st_mode
        except FileNotFoundError:
            raise SourceNotFound(f"V4L2 camera device not found: {device}") from None
        except PermissionError:
            raise SourceOpenError(f"permission denied opening {device}") from None
        if not stat.S_ISCHR(mode):
            raise SourceOpenError(f"{device} is not a video device (not a character device)")

    def _map_open_error(self, exc: av.error.FFmpegError) -> SourceError:
        if isinstance(exc, av.error.FileNotFoundError):
            return SourceNotFound(f"V4L2 camera device not found: {self.url}")
        if isinstance(exc, av.error.PermissionError):
            return SourceOpenError(
                f"permission denied opening {self.url} (is the user in the 'video' group?)"
            )
        if isinstance(exc, av.error.BlockingIOError | av.error.OSError) and "busy" in str(exc):
            return SourceOpenError(f"{self.url} is busy (another program is using the camera)")
        return SourceOpenError(f"cannot open V4L2 camera {self.url}: {describe_av_error(exc)}")
