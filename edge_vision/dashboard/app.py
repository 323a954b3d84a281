"""The Dash app: one page per area (streams, models, events, actions, prompts, training), an
alert strip on every page, and ``/video/<topic>.mjpg`` for live views.

Every callback reads ROS (through :class:`~edge_vision.dashboard.ros_bridge.RosBridge`) or the
event store afresh; nothing a user changes is kept in the web process. A node or service that
is not running shows as such ("not running") instead of failing the page.

This module builds the app, its header, alert strip and routing; each page (its layout,
callbacks and routes) is a module of :mod:`edge_vision.dashboard.pages`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dash
from dash import Input, Output, State, dcc, html

from edge_vision.dashboard.auth import Credentials, install
from edge_vision.dashboard.pages import actions, events, models, prompts, streams, training
from edge_vision.dashboard.pages.common import PageContext
from edge_vision.dashboard.ros_bridge import RosBridge

__all__ = ["PAGES", "DashboardConfig", "create_app"]

PAGES = (
    ("/streams", "Streams"),
    ("/models", "Models"),
    ("/events", "Events"),
    ("/actions", "Actions"),
    ("/prompts", "Prompts"),
    ("/training", "Training"),
)
_CSS = """
body{font:14px system-ui,sans-serif;margin:0;background:#f5f6f8;color:#222}
header{background:#1f2937;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center}
header a{color:#cbd5e1;text-decoration:none}header a.active{color:#fff;font-weight:600}
main{padding:12px 16px}.card{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:10px 14px;margin:0 0 12px}.row{display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.muted{color:#666}.ok{color:#15803d}.err{color:#b91c1c}.alert{background:#fef3c7;
border-left:4px solid #d97706;padding:4px 8px;margin:2px 0}
#alerts{padding:4px 16px}label{font-weight:600}input[type=text],input[type=number]{padding:3px}
.row .dash-input-container{flex:0 0 18em;width:18em}
.row .dash-input-container:has(#stream-uri){flex-basis:34em;width:34em}
.param{display:grid;grid-template-columns:220px 1fr 260px;gap:8px;align-items:center;
margin:4px 0}.live img{max-width:100%;border:1px solid #333;background:#000}
"""


class DashboardConfig:
    """Settings the pages need (read-only while the app runs)."""

    def __init__(
        self,
        database: str = "",
        streams_dir: str = "",
        events_limit: int = 500,
        refresh_s: float = 1.0,
        max_view_fps: float = 10.0,
        title: str = "edge_vision",
    ) -> None:
        self.database = database
        self.streams_dir = streams_dir or str(Path(tempfile.gettempdir()) / "edge_vision_streams")
        self.events_limit = events_limit
        self.refresh_s = refresh_s
        self.max_view_fps = max_view_fps
        self.title = title


# -- the app ---------------------------------------------------------------------------------------


def create_app(
    bridge: RosBridge, config: DashboardConfig, credentials: Credentials | None = None
) -> dash.Dash:
    app = dash.Dash(
        __name__,
        title=config.title,
        suppress_callback_exceptions=True,  # each page's components exist only on that page
        update_title=None,
    )
    install(app.server, credentials or Credentials())

    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + _CSS + "</style>")
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            html.Header(
                [html.B(config.title)]
                + [dcc.Link(t, href=p, id=f"nav-{t.lower()}") for p, t in PAGES]
            ),
            html.Div(id="alerts"),
            dcc.Interval(id="alerts-tick", interval=1000),
            html.Main(id="page"),
        ]
    )

    # path -> layout function, filled in by the pages' register() below; the streams page
    # takes the query (``?topic=``) as keywords.
    pages: dict[str, Callable[..., Any]] = {}

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def route(pathname: str | None, search: str | None) -> Any:
        page = pages.get(pathname or "/") or pages["/streams"]
        query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
        return page(**query) if page is pages["/streams"] else page()

    @app.callback(
        [Output(f"nav-{t.lower()}", "className") for _, t in PAGES], Input("url", "pathname")
    )
    def nav(pathname: str | None) -> list[str]:
        return ["active" if pathname == p else "" for p, _ in PAGES]

    @app.callback(Output("alerts", "children"), Input("alerts-tick", "n_intervals"))
    def alerts(_n: int | None) -> Any:
        items = bridge.recent_alerts(5)
        return [
            html.Div(
                [
                    html.B(f"{a['action']}: "),
                    a["text"],
                    html.Span(
                        f"  {time.strftime('%H:%M:%S', time.localtime(a['received']))}",
                        className="muted",
                    ),
                ],
                className="alert",
                **{"data-event": a["event_id"]},
            )
            for a in items
        ]

    context = PageContext(bridge, config)
    pages["/events"] = events.register(app, context)
    pages["/actions"] = actions.register(app, context)
    pages["/streams"] = pages["/"] = streams.register(app, context)
    pages["/models"] = models.register(app, context)
    pages["/prompts"] = prompts.register(app, context)
    pages["/training"] = training.register(app, context)
    return app
