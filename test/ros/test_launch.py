"""`edge-vision launch` with real nodes: a two-node pipeline from YAML, respawn, clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sensor_msgs.msg import Image

pytestmark = pytest.mark.ros

EDGE_VISION = [sys.executable, "-m", "edge_vision.cli.main"]


def _pids(log: Path, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"started {name} \(pid (\d+)\)", log.read_text())]


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("single_process", [False, True], ids=["processes", "single-process"])
def test_launch_two_node_pipeline_respawn_and_stop(ros, tmp_path, single_process):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "namespace": "lt",
                "nodes": [
                    {
                        "name": "video_source",
                        "executable": "video_source",
                        "parameters": {"uri": "test://pattern?width=320&height=240&fps=20"},
                        "respawn_delay": 0.5,
                    },
                    {
                        "name": "image_monitor",
                        "executable": "image_monitor",
                        "parameters": {"topic": "image_raw", "period": 0.5},
                    },
                ],
            }
        )
    )
    log = tmp_path / "launch.log"
    args = [*EDGE_VISION, "launch", str(pipeline)] + (
        ["--single-process"] if single_process else []
    )
    with open(log, "wb") as out:
        launcher = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        frames = ros.collect(Image, "/lt/image_raw", 5, timeout=30)
        assert (frames[0].width, frames[0].height) == (320, 240)
        assert _wait(lambda: "/lt/image_raw: " in log.read_text(), 15), log.read_text()

        if not single_process:
            (first_pid,) = _pids(log, "video_source")
            os.kill(first_pid, signal.SIGKILL)
            assert _wait(lambda: len(_pids(log, "video_source")) == 2, 15), log.read_text()
            second_pid = _pids(log, "video_source")[1]
            assert second_pid != first_pid
            assert ros.collect(Image, "/lt/image_raw", 3, timeout=20)  # frames flow again

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=20) == 0, log.read_text()
        if not single_process:
            children = _pids(log, "video_source") + _pids(log, "image_monitor")
            assert not any(_alive(pid) for pid in children)
        assert "Traceback" not in log.read_text()
    finally:
        if launcher.poll() is None:  # a failed assertion: stop it the way a user would
            launcher.send_signal(signal.SIGINT)
            try:
                launcher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
        # Children run in process groups of their own: never leave one behind.
        for pid in _pids(log, "video_source") + _pids(log, "image_monitor"):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
