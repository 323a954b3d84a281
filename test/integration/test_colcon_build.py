"""The ROS-workspace path: `colcon build` of this package, then its interfaces and executables
run from the colcon install (here against the ROS 2 PyPI wheels in the venv standing in for a
distro's underlay)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file()]


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    if shutil.which("colcon", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("colcon is not installed in the venv (requirements/test.txt lists it)")
    ws = tmp_path_factory.mktemp("ws")
    src = ws / "src" / "edge_vision"
    for rel in _tracked_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    env = {**os.environ, "AMENT_PREFIX_PATH": sys.prefix, "CMAKE_PREFIX_PATH": sys.prefix}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "colcon"),
            "build",
            "--event-handlers",
            "console_direct-",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return ws / "install" / "edge_vision"


def _install_env(prefix: Path) -> dict[str, str]:
    site = prefix / Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    return {
        **os.environ,
        "PYTHONPATH": str(site),
        "LD_LIBRARY_PATH": f"{prefix / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        "AMENT_PREFIX_PATH": f"{prefix}:{sys.prefix}",
    }


def test_colcon_build_installs_interfaces_that_import(colcon_install):
    code = (
        "import edge_vision, edge_vision.msg as m, edge_vision.srv as s\n"
        "from ament_index_python.packages import get_package_share_directory as share\n"
        "print(edge_vision.__file__)\n"
        "print(m.Event().STATE_END, s.GetSourceInfo.Response().state == '')\n"
        "print(share('edge_vision'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_install_env(colcon_install),
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.splitlines()
    assert out[0].startswith(str(colcon_install)), out  # the installed copy, not the checkout
    assert out[1] == "2 True"
    assert out[2] == str(colcon_install / "share" / "edge_vision")
    for rel in (
        "launch/pipeline.launch.py",
        "config/demo.yaml",
        "config/fastdds_shm.xml",
        "msg/Event.msg",
        "srv/GetSourceInfo.srv",
    ):
        assert (colcon_install / "share" / "edge_vision" / rel).is_file(), rel


def test_ros2_run_executables_are_installed_and_start(colcon_install, tmp_path):
    from edge_vision.nodes import NODE_EXECUTABLES

    lib = colcon_install / "lib" / "edge_vision"
    assert sorted(p.name for p in lib.iterdir()) == sorted(NODE_EXECUTABLES)
    # What `ros2 run edge_vision video_source` runs; a bad parameter makes it exit at once with
    # a clear message, which proves the installed module imports and parses parameters.
    result = subprocess.run(
        [sys.executable, str(lib / "video_source"), "--ros-args", "-p", "encoding:=bogus"],
        env=_install_env(colcon_install),
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bogus" in result.stderr and "Traceback" not in result.stderr
