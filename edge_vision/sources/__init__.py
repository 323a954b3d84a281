"""Video sources without ROS: files, image folders, test patterns, V4L2 cameras, RTSP.

Start with ``open_source(uri, **options)``; see ``edge_vision.sources.factory`` for the URI
forms and options.
"""

from edge_vision.sources.base import (
    SourceDisconnected,
    SourceError,
    SourceNotFound,
    SourceOpenError,
    SourceStats,
    VideoSource,
)
from edge_vision.sources.factory import (
    create_source,
    open_source,
    register_scheme,
    supported_schemes,
)
from edge_vision.sources.file_source import FileSource
from edge_vision.sources.folder_source import IMAGE_EXTENSIONS, ImageFolderSource
from edge_vision.sources.live import LiveAVSource, RtspSource, V4L2Source
from edge_vision.sources.reconnect import ReconnectingSource
from edge_vision.sources.test_pattern import TestPatternSource, read_pattern_code, render_pattern

__all__ = [
    "IMAGE_EXTENSIONS",
    "FileSource",
    "ImageFolderSource",
    "LiveAVSource",
    "ReconnectingSource",
    "RtspSource",
    "SourceDisconnected",
    "SourceError",
    "SourceNotFound",
    "SourceOpenError",
    "SourceStats",
    "TestPatternSource",
    "V4L2Source",
    "VideoSource",
    "create_source",
    "open_source",
    "read_pattern_code",
    "register_scheme",
    "render_pattern",
    "supported_schemes",
]
