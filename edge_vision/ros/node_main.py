"""Process entry point shared by every node: init, spin, clean shutdown, exit codes.

Ctrl-C (SIGINT) and SIGTERM end the process with exit code 0 after the node's ``close()``;
a configuration error raised while the node is built (:class:`NodeConfigError`) is printed as one
clear line and exits with code 2, never as a traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.node import Node
from rclpy.task import Future


class NodeConfigError(Exception):
    """A parameter or argument makes the node unable to start; the message says which."""


class EdgeVisionNode(Node):
    """Base for the package's nodes: a ``finished`` future (set it to stop the process with
    that exit code) and a ``close()`` hook for threads and devices, run once at shutdown."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.finished: Future = Future()

    def finish(self, exit_code: int = 0) -> None:
        if not self.finished.done():
            self.finished.set_result(exit_code)

    def close(self) -> None:
        """Release resources; called before ``destroy_node``."""


def run_node(
    factory: Callable[[], EdgeVisionNode], args: Sequence[str] | None = None, threads: int = 2
) -> int:
    """Build the node with ``factory`` and spin it until Ctrl-C, SIGTERM or ``finish()``."""
    rclpy.init(args=list(args) if args is not None else sys.argv)
    # SIGTERM (what process managers send) gets the same clean shutdown as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node: EdgeVisionNode | None = None
    exit_code = 0
    try:
        node = factory()
        # One thread where callbacks never block: rclpy's multi-threaded executor costs CPU and
        # adds latency spikes of 100+ ms under load (bench/events_actions.py, tracker node).
        executor = (
            SingleThreadedExecutor() if threads == 1 else MultiThreadedExecutor(num_threads=threads)
        )
        executor.add_node(node)
        executor.spin_until_future_complete(node.finished)
        if node.finished.done():
            exit_code = int(node.finished.result() or 0)
    except NodeConfigError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr, flush=True)
        exit_code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return exit_code
