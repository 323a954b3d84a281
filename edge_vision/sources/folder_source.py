"""A folder of still images played as a video."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

from edge_vision.core.frame import Frame
from edge_vision.sources.base import SourceNotFound, SourceOpenError, VideoSource

_log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pnm",
)


def _natural_key(path: Path) -> list[int | str]:
    # So that frame2.png sorts before frame10.png, as people number their frames.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(VideoSource):
    """The images of one folder, in natural sort order (``img2`` before ``img10``).

    Without ``pattern`` every file with a common image extension (``IMAGE_EXTENSIONS``, any
    case) is used; with ``pattern`` (a glob relative to the folder, e.g. ``"cam1_*.png"``)
    exactly the matching files are. Images are decoded with OpenCV to 8-bit BGR; an image that
    cannot be decoded is skipped with a logged warning and counted in ``skipped`` (and, since
    ``Frame.index`` is the position in the sequence, as a dropped frame). Images may differ in
    size; ``size`` is that of the first readable one.

    ``fps`` is only metadata for the caller's pacing (``nominal_fps``, and
    ``source_pts = position / fps``); reading is never slowed down. ``loop=True`` starts over
    after the last image. ``Frame.meta["path"]`` is the image's file name.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        pattern: str | None = None,
        loop: bool = False,
        fps: float | None = None,
    ) -> None:
        super().__init__()
        if fps is not None and fps <= 0:
            raise SourceOpenError(f"fps must be positive, got {fps}")
        self._folder = Path(folder)
        self._pattern = pattern
        self._loop = loop
        self._fps = fps
        self._files: list[Path] = []
        self._position = 0
        self._index = 0
        self._skipped = 0
        self._size: tuple[int, int] | None = None
        self._pending: tuple[np.ndarray, Path] | None = None

    @property
    def description(self) -> str:
        suffix = f" ({self._pattern})" if self._pattern else ""
        return f"image folder {self._folder}{suffix}"

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    @property
    def files(self) -> list[Path]:
        """The image files found by ``open()``, in playback order."""
        return list(self._files)

    @property
    def skipped(self) -> int:
        """Images that could not be decoded (each skip is counted every time it happens)."""
        return self._skipped

    def _list_files(self) -> list[Path]:
        if self._pattern:
            candidates = self._folder.glob(self._pattern)
        else:
            candidates = (p for p in self._folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return sorted((p for p in candidates if p.is_file()), key=_natural_key)

    def _open(self) -> None:
        folder = self._folder
        if not folder.exists():
            raise SourceNotFound(f"image folder not found: {folder}")
        if not folder.is_dir():
            raise SourceOpenError(f"{folder} is not a folder")
        try:
            self._files = self._list_files()
        except PermissionError:
            raise SourceOpenError(f"permission denied listing image folder {folder}") from None
        if not self._files:
            wanted = self._pattern or ", ".join(IMAGE_EXTENSIONS)
            raise SourceNotFound(f"no images matching {wanted} in folder {folder}")
        self._position = 0
        self._index = 0
        # Find the first readable image now: it gives ``size``, and a folder of nothing but
        # broken files fails here instead of silently ending.
        found = self._next_image(allow_wrap=False)
        if found is None:
            raise SourceOpenError(f"none of the {len(self._files)} images in {folder} is readable")
        self._pending = found
        self._size = (found[0].shape[1], found[0].shape[0])

    def _next_image(self, *, allow_wrap: bool) -> tuple[np.ndarray, Path] | None:
        """Decode the next readable image, advancing position and index past skipped ones."""
        misses = 0
        while misses < len(self._files):
            if self._position >= len(self._files):
                if not allow_wrap:
                    return None
                self._position = 0
            path = self._files[self._position]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image, path
            self._skipped += 1
            misses += 1
            self._position += 1
            self._index += 1
            _log.warning("skipping unreadable image %s", path)
        return None

    def _read(self) -> Frame | None:
        if self._pending is not None:
            found: tuple[np.ndarray, Path] | None = self._pending
            self._pending = None
        else:
            found = self._next_image(allow_wrap=self._loop)
        if found is None:
            return None
        image, path = found
        pts = self._position / self._fps if self._fps else None
        frame = Frame(
            image=image,
            stamp_ns=time.time_ns(),
            index=self._index,
            source_pts=pts,
            meta={"path": path.name},
        )
        self._position += 1
        self._index += 1
        return frame

    def _close(self) -> None:
        self._pending = None
