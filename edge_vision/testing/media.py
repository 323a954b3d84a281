"""Real test media from Debian packages (installed by scripts/setup_venv.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST = OPENCV_DATA / "vtest.avi"  # 768x576, 10 fps, 795 frames: people walking


def require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test media {path} is missing: run `make setup` (installs Debian opencv-doc)")
    return path
