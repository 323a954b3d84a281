"""Video files (anything FFmpeg reads) decoded with PyAV."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import av
import av.error

from edge_vision.core.frame import Frame
from edge_vision.sources._av import describe_av_error, stream_fps, to_bgr
from edge_vision.sources.base import SourceNotFound, SourceOpenError, VideoSource

_log = logging.getLogger(__name__)

# Consecutive decode errors tolerated before the rest of the file is treated as unreadable.
_MAX_CONSECUTIVE_ERRORS = 10


class FileSource(VideoSource):
    """Frames of a video file, in order, as fast as they are read.

    PyAV (FFmpeg) rather than OpenCV because it reports real presentation times, declared
    frame rates and precise errors; with the OpenCV colour conversion it decodes as fast
    (see ``_av.to_bgr``).

    ``Frame.source_pts`` is the presentation time in seconds within the file and
    ``nominal_fps`` its declared rate, so the caller can pace playback. With ``loop=True``
    the file restarts (seek to 0) at its end: ``source_pts`` starts again from the beginning,
    ``Frame.index`` keeps counting and ``Frame.meta["loop"]`` holds the pass number.
    Otherwise ``read()`` returns None at the end.
    """

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = False) -> None:
        super().__init__()
        self._path = Path(path)
        self._loop = loop
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._pending: av.VideoFrame | None = None
        self._fps: float | None = None
        self._size: tuple[int, int] | None = None
        self._index = 0
        self._pass = 0

    @property
    def description(self) -> str:
        return f"file {self._path}"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def loop(self) -> bool:
        return self._loop

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    @property
    def duration_s(self) -> float | None:
        """Container duration in seconds, when known (after ``open()``)."""
        if self._container is None or self._container.duration is None:
            return None
        return self._container.duration / av.time_base

    def _open(self) -> None:
        path = self._path
        if not path.exists():
            raise SourceNotFound(f"video file not found: {path}")
        if path.is_dir():
            raise SourceOpenError(f"{path} is a directory, not a video file")
        self._start_container()
        # Decode the first frame now so a file that opens but cannot be decoded (truncated,
        # corrupt, unsupported codec) fails in open() rather than on the first read().
        try:
            first = self._next_av_frame()
        except SourceOpenError:
            self._close()
            raise
        if first is None:
            self._close()
            raise SourceOpenError(f"{path} contains no decodable video frames")
        self._pending = first
        self._size = (first.width, first.height)
        self._index = 0
        self._pass = 0

    def _start_container(self) -> None:
        path = self._path
        try:
            container = av.open(str(path), mode="r")
        except av.error.FileNotFoundError:
            raise SourceNotFound(f"video file not found: {path}") from None
        except av.error.PermissionError:
            raise SourceOpenError(f"permission denied reading video file {path}") from None
        except av.error.InvalidDataError:
            raise SourceOpenError(
                f"cannot read {path}: not a recognised video format, or the file is corrupt"
            ) from None
        except av.error.FFmpegError as exc:
            raise SourceOpenError(f"cannot open {path}: {describe_av_error(exc)}") from None
        if not container.streams.video:
            container.close()
            raise SourceOpenError(f"{path} has no video stream")
        stream = container.streams.video[0]
        # Frame threading adds a few frames of latency, which does not matter for files.
        stream.thread_type = "AUTO"
        self._container = container
        self._stream = stream
        self._fps = stream_fps(stream)
        self._frames = container.decode(stream)

    def _next_av_frame(self) -> av.VideoFrame | None:
        """Next decoded frame of the current pass, None at the end of the file."""
        errors = 0
        while self._frames is not None:
            try:
                return next(self._frames)
            except StopIteration:
                return None
            except av.error.FFmpegError as exc:
                errors += 1
                if errors >= _MAX_CONSECUTIVE_ERRORS:
                    raise SourceOpenError(
                        f"cannot decode {self._path}: {describe_av_error(exc)}"
                    ) from None
                _log.warning("%s: skipping undecodable data: %s", self._path, exc)
                # A generator that raised is finished; continue demuxing from where it was.
                assert self._container is not None and self._stream is not None
                self._frames = self._container.decode(self._stream)
        return None

    def _rewind(self) -> bool:
        """Restart at the beginning; False if the file yields nothing after rewinding."""
        assert self._container is not None and self._stream is not None
        try:
            self._container.seek(0)
            self._frames = self._container.decode(self._stream)
            frame = self._next_av_frame()
        except (av.error.FFmpegError, SourceOpenError) as exc:
            _log.debug("%s: seek failed (%s), reopening instead", self._path, exc)
            frame = None
        if frame is None:
            # Some inputs cannot seek (e.g. raw streams); reopening always works.
            self._close_container()
            self._start_container()
            frame = self._next_av_frame()
        self._pending = frame
        return frame is not None

    def _read(self) -> Frame | None:
        if self._pending is not None:
            av_frame: av.VideoFrame | None = self._pending
            self._pending = None
        else:
            av_frame = self._next_av_frame()
            if av_frame is None:
                if not self._loop or not self._rewind():
                    return None
                self._pass += 1
                av_frame, self._pending = self._pending, None
        assert av_frame is not None
        frame = Frame(
            image=to_bgr(av_frame),
            stamp_ns=time.time_ns(),
            index=self._index,
            source_pts=av_frame.time,
            meta={"loop": str(self._pass)} if self._loop else {},
        )
        self._index += 1
        return frame

    def _close_container(self) -> None:
        self._frames = None
        self._pending = None
        if self._container is not None:
            with contextlib.suppress(av.error.FFmpegError):
                self._container.close()
        self._container = None
        self._stream = None

    def _close(self) -> None:
        self._close_container()
