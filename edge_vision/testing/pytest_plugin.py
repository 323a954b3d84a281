"""pytest fixtures for node tests over real DDS (enable with ``pytest_plugins``).

- ``ros``: a session-wide :class:`RosClient`;
- ``start_node``: starts :class:`NodeProcess` es and stops whatever a test leaves running.

Importing this module isolates the ROS environment (loopback discovery, own domain id) before any
rclpy context exists.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_vision.testing.ros_harness import NodeProcess, RosClient, isolate_ros_environment

ROS_ENV = isolate_ros_environment()

# A run started in the background by a non-interactive shell (``make test &``) inherits SIGINT
# ignored, and so would every process the tests start: a CLI stopped with SIGINT would then run
# on. A handler of our own is reset to the default in the children (exec), an ignore is not.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def ros() -> Iterator[RosClient]:
    client = RosClient()
    yield client
    client.close()


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(executable: str, **kwargs) -> NodeProcess:
        kwargs.setdefault("log_dir", tmp_path)
        proc = NodeProcess(executable, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.stop(timeout=15)  # SIGKILL leaves its endpoints in the graph for a while
