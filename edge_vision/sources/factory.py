"""Choose and build a video source from a URI string.

Accepted forms (query parameters are options too; keyword options win over them):

=========================================  ===============================================
``/path/to/video.mp4``, ``file:///path``   ``FileSource`` (anything FFmpeg reads)
``/path/to/folder``, ``file:///folder``    ``ImageFolderSource`` (natural-sorted images)
``/path/to/folder/*.png``                  ``ImageFolderSource`` with that glob pattern
``test://pattern?width=640&height=480&fps=30``
                                           ``TestPatternSource`` (``test://testsrc2`` for
                                           FFmpeg's lavfi generator; ``test://`` alone is
                                           the default pattern)
``/dev/video0``, ``v4l2:///dev/video0``    ``V4L2Source``
``rtsp://[user:pass@]host[:port]/path``    ``RtspSource`` in a ``ReconnectingSource``
``webrtc://127.0.0.1:8089``                ``WebRtcSource``: serves a page there that sends
                                           a browser's camera over WebRTC
=========================================  ===============================================

Options understood by every source (ignored where they mean nothing):
``loop`` (files, folders), ``fps`` (folders and test patterns: nominal rate; V4L2: requested
rate), ``width``/``height`` (test patterns: size; V4L2: requested size).
Source-specific options: ``pattern`` (folder glob), ``limit`` (test pattern frame count),
``input_format`` (V4L2), ``transport``, ``open_timeout_s``, ``read_timeout_s``,
``queue_size`` (RTSP/V4L2), ``reconnect`` (RTSP, default true), ``retry_initial``,
``initial_backoff_s``, ``max_backoff_s``, ``backoff_factor``, ``jitter`` (reconnection);
``read_timeout_s``, ``open_timeout_s``, ``queue_size``, ``certfile``, ``keyfile``,
``ice_addresses`` (WebRTC; ``width``/``height``/``fps`` are the camera it asks for).
An option no source knows raises ``SourceOpenError``.

New schemes register a builder with ``register_scheme`` (``webrtc://`` does, below).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from edge_vision.sources.base import SourceNotFound, SourceOpenError, VideoSource, redact_url
from edge_vision.sources.file_source import FileSource
from edge_vision.sources.folder_source import ImageFolderSource
from edge_vision.sources.live import RtspSource, V4L2Source
from edge_vision.sources.reconnect import ReconnectingSource
from edge_vision.sources.test_pattern import TestPatternSource

__all__ = ["SourceBuilder", "create_source", "open_source", "register_scheme", "supported_schemes"]

SourceBuilder = Callable[[str, dict[str, Any]], VideoSource]
"""Builds an unopened source from the full URI and its options (already typed; the builder
removes what it uses from the dict, and anything left over is reported as unknown)."""

_GENERIC_OPTIONS = frozenset({"loop", "fps", "width", "height"})
_RECONNECT_OPTIONS = (
    "initial_backoff_s",
    "max_backoff_s",
    "backoff_factor",
    "jitter",
    "retry_initial",
)
_BOOL_OPTIONS = frozenset({"loop", "reconnect", "retry_initial"})
_INT_OPTIONS = frozenset({"width", "height", "limit", "queue_size"})
_FLOAT_OPTIONS = frozenset(
    {
        "fps",
        "open_timeout_s",
        "read_timeout_s",
        "initial_backoff_s",
        "max_backoff_s",
        "backoff_factor",
        "jitter",
    }
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _typed(name: str, value: Any) -> Any:
    """Convert option values (query strings arrive as text) to the type the source wants."""
    try:
        if name in _BOOL_OPTIONS and isinstance(value, str):
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError(value)
        if name in _BOOL_OPTIONS:
            return bool(value)
        if name in _INT_OPTIONS and value is not None:
            return int(value)
        if name in _FLOAT_OPTIONS and value is not None:
            return float(value)
    except (TypeError, ValueError):
        raise SourceOpenError(f"invalid value {value!r} for source option {name!r}") from None
    return value


def _pop(options: dict[str, Any], name: str, default: Any = None) -> Any:
    value = options.pop(name, None)
    return default if value is None else value


# -- builders ---------------------------------------------------------------------------------


def _build_path(path_text: str, options: dict[str, Any]) -> VideoSource:
    path = Path(os.path.expanduser(path_text))
    if path.is_dir():
        return ImageFolderSource(
            path,
            pattern=_pop(options, "pattern"),
            loop=_pop(options, "loop", False),
            fps=_pop(options, "fps"),
        )
    if path.exists():
        return FileSource(path, loop=_pop(options, "loop", False))
    if glob.has_magic(path.name) and path.parent.is_dir():
        # "/data/frames/*.png": a folder with a pattern.
        return ImageFolderSource(
            path.parent,
            pattern=path.name,
            loop=_pop(options, "loop", False),
            fps=_pop(options, "fps"),
        )
    if str(path).startswith("/dev/video"):
        raise SourceNotFound(f"V4L2 camera device not found: {path}")
    raise SourceNotFound(f"no such file or folder: {path}")


def _build_file(uri: str, options: dict[str, Any]) -> VideoSource:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise SourceOpenError(f"file URI must name a local path (file:///path), got {uri!r}")
    return _build_path(unquote(parts.path), options)


def _build_test(uri: str, options: dict[str, Any]) -> VideoSource:
    name = urlsplit(uri).netloc or "pattern"
    return TestPatternSource(
        width=_pop(options, "width", 640),
        height=_pop(options, "height", 480),
        fps=_pop(options, "fps", 30.0),
        pattern=name,
        limit=_pop(options, "limit"),
    )


def _build_v4l2(uri: str, options: dict[str, Any]) -> VideoSource:
    if uri.startswith("v4l2:"):
        parts = urlsplit(uri)
        # v4l2:///dev/video0, and the forgiving v4l2://dev/video0 and v4l2://video0.
        device = unquote(parts.path) if not parts.netloc else f"/{parts.netloc}{parts.path}"
        if not device.startswith("/dev/"):
            device = f"/dev{device}"
    else:
        device = uri
    return V4L2Source(
        device,
        width=_pop(options, "width"),
        height=_pop(options, "height"),
        fps=_pop(options, "fps"),
        input_format=_pop(options, "input_format"),
        open_timeout_s=_pop(options, "open_timeout_s", 5.0),
        read_timeout_s=_pop(options, "read_timeout_s", 2.0),
        queue_size=_pop(options, "queue_size", 1),
    )


def _build_rtsp(uri: str, options: dict[str, Any]) -> VideoSource:
    # The query string belongs to the server's URL, not to us: keep it in the URL.
    source = RtspSource(
        uri,
        transport=_pop(options, "transport", "tcp"),
        open_timeout_s=_pop(options, "open_timeout_s", 5.0),
        read_timeout_s=_pop(options, "read_timeout_s", 2.0),
        queue_size=_pop(options, "queue_size", 1),
    )
    reconnect_options = {k: options.pop(k) for k in _RECONNECT_OPTIONS if k in options}
    if not _pop(options, "reconnect", True):
        return source
    return ReconnectingSource(source, **reconnect_options)


_BUILDERS: dict[str, SourceBuilder] = {
    "file": _build_file,
    "test": _build_test,
    "v4l2": _build_v4l2,
    "rtsp": _build_rtsp,
    "rtsps": _build_rtsp,
}
# Schemes whose query string is part of the remote URL rather than our options.
_OPAQUE_QUERY: set[str] = {"rtsp", "rtsps"}


def register_scheme(scheme: str, builder: SourceBuilder, *, opaque_query: bool = False) -> None:
    """Make ``open_source`` handle ``scheme://...`` URIs with ``builder``.

    ``opaque_query=True`` leaves the URI's query string alone (it is meant for a remote
    server) instead of reading options from it.
    """
    scheme = scheme.lower()
    _BUILDERS[scheme] = builder
    if opaque_query:
        _OPAQUE_QUERY.add(scheme)
    else:
        _OPAQUE_QUERY.discard(scheme)


def supported_schemes() -> list[str]:
    return sorted(_BUILDERS)


def create_source(uri: str, **options: Any) -> VideoSource:
    """Build the source for ``uri`` without opening it (see the module doc for the forms)."""
    if not uri or not uri.strip():
        raise SourceOpenError("empty video source URI")
    uri = uri.strip()
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    # A one-letter "scheme" is a Windows drive, and no scheme means a plain path.
    is_path = not scheme or len(scheme) == 1 or ("://" not in uri and scheme not in _BUILDERS)
    opts: dict[str, Any] = {}
    if not is_path and parts.query and scheme not in _OPAQUE_QUERY:
        opts.update(parse_qsl(parts.query, keep_blank_values=True))
        uri = uri.split("?", 1)[0]
    opts.update(options)
    opts = {name: _typed(name, value) for name, value in opts.items()}

    builder: SourceBuilder
    if is_path:
        builder = _build_v4l2 if uri.startswith("/dev/video") else _build_path
    else:
        found = _BUILDERS.get(scheme)
        if found is None:
            raise SourceOpenError(
                f"unsupported video source {redact_url(uri)!r}: unknown scheme {scheme!r}; "
                f"supported: {', '.join(s + '://' for s in supported_schemes())}, "
                "a file or folder path, or /dev/videoN"
            )
        builder = found
    source = builder(uri, opts)
    unknown = sorted(set(opts) - _GENERIC_OPTIONS)
    if unknown:
        raise SourceOpenError(
            f"option(s) {', '.join(unknown)} not understood by {source.description}"
        )
    return source


def open_source(uri: str, **options: Any) -> VideoSource:
    """Build and open the source for ``uri``; raises ``SourceNotFound`` / ``SourceOpenError``.

    RTSP URIs come back wrapped in ``ReconnectingSource`` (unless ``reconnect=False``).
    """
    source = create_source(uri, **options)
    source.open()
    return source


def _build_webrtc(uri: str, options: dict[str, Any]) -> VideoSource:
    # Imported on use: aiortc is only loaded by those who ask for a webrtc:// source.
    from edge_vision.sources.webrtc_source import build_webrtc_source

    return build_webrtc_source(uri, options)


register_scheme("webrtc", _build_webrtc)
