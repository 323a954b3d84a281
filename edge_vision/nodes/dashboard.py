"""dashboard: a Plotly Dash web app over the running system, with an rclpy node inside.

Pages: streams (list, add a video_source + detector pipeline through the launcher, live MJPEG
view of an image topic with fps and latency, browser camera), models (zoo, pull, load into a
node, import an ONNX model), events (live table and timeline from the event store), actions
(types, instances, typed properties as controls, enable/disable), prompts (open-vocabulary
detector) and training (dataset tags, recording, upload, label distribution; trainer
start/stop/resume and progress); alerts from ``alert`` actions appear on every page.

The web server runs in a thread of this process; the node is spun by the executor of
:func:`~edge_vision.ros.node_main.run_node`. It binds 127.0.0.1 by default; any other address
needs a password or a token (parameters or the environment variables
``EDGE_VISION_DASHBOARD_PASSWORD`` / ``EDGE_VISION_DASHBOARD_TOKEN``), else the node refuses to
start (exit code 2).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from edge_vision.dashboard.auth import AuthConfigError, Credentials, check_bind
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding

PARAMS = (
    Param("host", "127.0.0.1", "Address to listen on.", read_only=True),
    Param("port", 8050, "HTTP port (0: any free port, logged).", range=(0, 65535), read_only=True),
    Param(
        "password",
        "",
        "HTTP Basic password (any user name); required, or token, for a non-loopback host.",
        read_only=True,
    ),
    Param("token", "", "Access token (?token=, Bearer header).", read_only=True),
    Param(
        "database",
        "",
        "Event store (SQLite) to read events from; empty: ask the event_aggregator nodes "
        "(their ~/query service).",
        read_only=True,
    ),
    Param(
        "streams_dir",
        "",
        "Where pipelines of added streams and their launcher pids are kept (default: a "
        "folder in the temp dir).",
        read_only=True,
    ),
    Param("events_limit", 500, "Newest events shown.", range=(1, 100_000), read_only=True),
    Param("refresh_s", 1.0, "Events page refresh period.", range=(0.2, 60.0), read_only=True),
    Param("max_view_fps", 10.0, "Live view frame rate cap.", range=(0.5, 60.0), read_only=True),
    Param("call_timeout_s", 5.0, "Service call time-out.", range=(0.5, 120.0), read_only=True),
)


class DashboardNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("dashboard", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        p = self.params
        credentials = Credentials(
            p["password"] or os.environ.get("EDGE_VISION_DASHBOARD_PASSWORD", ""),
            p["token"] or os.environ.get("EDGE_VISION_DASHBOARD_TOKEN", ""),
        )
        try:
            check_bind(p["host"], credentials)
        except AuthConfigError as exc:
            raise NodeConfigError(str(exc)) from exc

        from werkzeug.serving import make_server

        from edge_vision.dashboard.app import DashboardConfig, create_app
        from edge_vision.dashboard.ros_bridge import RosBridge

        self.bridge = RosBridge(self, call_timeout_s=p["call_timeout_s"])
        config = DashboardConfig(
            database=p["database"],
            streams_dir=p["streams_dir"],
            events_limit=p["events_limit"],
            refresh_s=p["refresh_s"],
            max_view_fps=p["max_view_fps"],
        )
        self.app = create_app(self.bridge, config, credentials)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        try:
            self._server = make_server(p["host"], p["port"], self.app.server, threaded=True)
        except OSError as exc:
            raise NodeConfigError(f"cannot listen on {p['host']}:{p['port']}: {exc}") from exc
        self._server.daemon_threads = True  # live views end with the process
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dashboard-http", daemon=True
        )
        self._thread.start()
        auth = "password/token required" if credentials.required else "no authentication"
        self.get_logger().info(f"dashboard at {self.url} ({auth})")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def create_node(args: list[str]) -> DashboardNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return DashboardNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    # Web threads wait on service answers that the executor delivers: more than one thread.
    return run_node(DashboardNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())
