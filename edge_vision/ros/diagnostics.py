"""Periodic diagnostics on /diagnostics (diagnostic_msgs/DiagnosticArray), one status per node.

Tools like rqt_runtime_monitor and diagnostic_aggregator read this topic; the values are the
node's counters (fps, drops, reconnects, last error) so that operators see problems without logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

# diagnostic_msgs levels (the message constants are bytes; plain ints are easier to compare).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


@dataclass
class Status:
    level: int = OK
    message: str = "ok"
    values: Mapping[str, object] = field(default_factory=dict)


class DiagnosticsPublisher:
    """Publishes ``collect()`` every ``period`` seconds as ``<node fqn>: <hardware_id>``."""

    def __init__(
        self,
        node: Node,
        collect: Callable[[], Status],
        period: float = 1.0,
        hardware_id: str = "",
    ) -> None:
        self._node = node
        self._collect = collect
        self._hardware_id = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period, self.publish_now)

    def publish_now(self) -> None:
        try:
            status = self._collect()
        except Exception as exc:  # a reporting bug must not take the node down
            status = Status(ERROR, f"diagnostics failed: {type(exc).__name__}: {exc}")
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(
                level=bytes([status.level]),
                name=self._node.get_fully_qualified_name(),
                message=status.message,
                hardware_id=self._hardware_id,
                values=[KeyValue(key=k, value=_fmt(v)) for k, v in status.values.items()],
            )
        ]
        self._pub.publish(msg)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
