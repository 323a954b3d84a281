"""The Dash app: one page per area (streams, models, events, actions, prompts, training), an
alert strip on every page, and ``/video/<topic>.mjpg`` for live views.

Every callback reads ROS (through :class:`~edge_vision.dashboard.ros_bridge.RosBridge`) or the
event store afresh; nothing a user changes is kept in the web process. A node or service that
is not running shows as such ("not running") instead of failing the page.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dash
import plotly.graph_objects as go
from dash import ALL, MATCH, Input, Output, State, ctx, dash_table, dcc, html
from flask import Response, abort

from edge_vision.dashboard import streams as stream_control
from edge_vision.dashboard.auth import Credentials, install
from edge_vision.dashboard.ros_bridge import BridgeError, RosBridge

__all__ = ["PAGES", "DashboardConfig", "create_app", "event_rows", "parameter_control"]

PAGES = (
    ("/streams", "Streams"),
    ("/models", "Models"),
    ("/events", "Events"),
    ("/actions", "Actions"),
    ("/prompts", "Prompts"),
    ("/training", "Training"),
)
EVENT_COLUMNS = (
    "begin",
    "stream",
    "label",
    "state",
    "max_score",
    "frames",
    "duration_s",
    "track_id",
    "model",
    "id",
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


# -- pure helpers (unit-tested) ------------------------------------------------------------------


def event_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Event dicts (``Event.to_dict()``) -> table rows, newest first."""
    rows = []
    for e in sorted(events, key=lambda e: (e["begin_ns"], e["id"]), reverse=True):
        begin = dt.datetime.fromtimestamp(e["begin_ns"] / 1e9, dt.UTC)
        rows.append(
            {
                "begin": begin.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                "stream": e["stream"],
                "label": e["label"],
                "state": e["state"] if isinstance(e["state"], str) else str(e["state"]),
                "max_score": round(float(e["max_score"]), 3),
                "frames": int(e["frames"]),
                "duration_s": round((e["end_ns"] - e["begin_ns"]) / 1e9, 2),
                "track_id": e["track_id"],
                "model": e["model"],
                "id": e["id"],
            }
        )
    return rows


def timeline_figure(events: list[dict[str, Any]]) -> go.Figure:
    """Confidence (max score) against time, one trace per class."""
    fig = go.Figure()
    by_label: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: e["begin_ns"]):
        by_label.setdefault(e["label"], []).append(e)
    for label, items in sorted(by_label.items()):
        fig.add_trace(
            go.Scatter(
                x=[dt.datetime.fromtimestamp(e["begin_ns"] / 1e9, dt.UTC) for e in items],
                y=[e["max_score"] for e in items],
                mode="markers",
                name=label,
                text=[f"{e['stream']} track {e['track_id']} ({e['state']})" for e in items],
            )
        )
    fig.update_layout(
        height=280,
        margin={"l": 40, "r": 10, "t": 10, "b": 30},
        yaxis={"title": "confidence", "range": [0, 1.05]},
        xaxis={"title": "time (UTC)"},
        legend={"title": "class"},
        showlegend=True,  # even with one class: the legend names it
    )
    return fig


_TYPES = {1: "bool", 2: "integer", 3: "double", 4: "string", 9: "string_array"}


def parameter_control(node: str, name: str, descriptor: Any, value: Any) -> Any:
    """A control fitting the parameter's descriptor: checkbox (bool), slider (number with a
    range), number box (number), text box (string; string arrays comma-separated)."""
    kind = _TYPES.get(int(descriptor.type), "other")
    cid = {"type": "param", "node": node, "param": name, "kind": kind}
    disabled = bool(descriptor.read_only)
    if kind == "bool":
        return dcc.Checklist(
            id=cid, options=[{"label": " on", "value": "on"}], value=["on"] if value else []
        )
    if kind in ("integer", "double"):
        ranges = descriptor.integer_range if kind == "integer" else descriptor.floating_point_range
        if ranges:
            lo, hi = ranges[0].from_value, ranges[0].to_value
            # A slider only where the range is small enough to pick from by dragging.
            if kind == "double" or hi - lo <= 1000:
                step = 1 if kind == "integer" else (hi - lo) / 100
                return dcc.Slider(
                    id=cid,
                    min=lo,
                    max=hi,
                    step=step,
                    value=value,
                    marks=None,
                    tooltip={"placement": "bottom"},
                    disabled=disabled,
                )
            return dcc.Input(
                id=cid, type="number", min=lo, max=hi, value=value, debounce=True, disabled=disabled
            )
        return dcc.Input(
            id=cid,
            type="number",
            step=1 if kind == "integer" else "any",
            value=value,
            debounce=True,
            disabled=disabled,
        )
    if kind == "string_array":
        text = ", ".join(value or [])
        return dcc.Input(id=cid, type="text", value=text, debounce=True, disabled=disabled)
    return dcc.Input(
        id=cid, type="text", value="" if value is None else str(value), debounce=True, size="50"
    )


def control_value(kind: str, value: Any) -> Any:
    """A control's value as the parameter's type."""
    if kind == "bool":
        return bool(value)
    if kind == "integer":
        return int(value)
    if kind == "double":
        return float(value)
    if kind == "string_array":
        return [v.strip() for v in str(value or "").split(",") if v.strip()] or [""]
    return "" if value is None else str(value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _msg(ok: bool, text: str) -> html.Span:
    return html.Span(text, className="ok" if ok else "err")


def _not_running(what: str) -> html.Div:
    return html.Div(f"{what}: not running (none found in the ROS graph)", className="muted")


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
    store_lock = threading.Lock()
    store_holder: dict[str, Any] = {}

    def load_events() -> tuple[list[dict[str, Any]], str]:
        if config.database:
            from edge_vision.events import EventStore

            with store_lock:
                if "store" not in store_holder:
                    store_holder["store"] = EventStore(config.database)
                store = store_holder["store"]
            events = [e.to_dict() for e in store.query(limit=config.events_limit)]
            return events, f"store {config.database}"
        aggregators = bridge.aggregators()
        if not aggregators:
            raise BridgeError("event_aggregator: not running (no ~/query service found)")
        return bridge.query_events(config.events_limit), "query " + ", ".join(aggregators)

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

    pages: dict[str, Callable[..., Any]] = {}

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def route(pathname: str | None, search: str | None) -> Any:
        page = pages.get(pathname or "/") or pages["/streams"]
        query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
        return page(**query) if page is streams_page else page()

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

    # -- events ------------------------------------------------------------------------------------
    def events_page() -> Any:
        return html.Div(
            [
                html.H2("Events"),
                html.Div(id="events-status", className="muted"),
                dcc.Graph(id="events-timeline", figure=timeline_figure([])),
                dash_table.DataTable(
                    id="events-table",
                    columns=[{"name": c, "id": c} for c in EVENT_COLUMNS],
                    data=[],
                    filter_action="native",
                    sort_action="native",
                    sort_mode="multi",
                    page_size=15,
                    style_cell={"fontSize": 13, "textAlign": "left"},
                ),
                dcc.Interval(id="events-tick", interval=int(config.refresh_s * 1000)),
            ],
            className="card",
        )

    pages["/events"] = events_page

    @app.callback(
        Output("events-table", "data"),
        Output("events-timeline", "figure"),
        Output("events-status", "children"),
        Input("events-tick", "n_intervals"),
    )
    def refresh_events(_n: int | None) -> Any:
        try:
            events, source = load_events()
        except BridgeError as exc:
            return [], timeline_figure([]), _msg(False, str(exc))
        return (
            event_rows(events),
            timeline_figure(events),
            f"{len(events)} events (newest {config.events_limit}) from {source}",
        )

    # -- actions -----------------------------------------------------------------------------------
    def actions_page() -> Any:
        nodes = bridge.action_triggers()
        return html.Div(
            [
                html.H2("Actions"),
                html.Div(
                    [
                        html.Label("action_trigger node "),
                        dcc.Dropdown(
                            id="actions-node",
                            options=nodes,
                            value=nodes[0] if nodes else None,
                            style={"width": "360px"},
                        ),
                    ],
                    className="row",
                ),
                html.Div(id="create-action-status"),
                dcc.Store(id="actions-changed"),
                html.Div(id="actions-body"),
            ],
            className="card",
        )

    pages["/actions"] = actions_page

    def instance_card(node: str, name: str, type_name: str) -> Any:
        names = bridge.list_parameters(node, [name])
        names = [n for n in names if n.startswith(name + ".")]
        descriptors = bridge.describe_parameters(node, names) if names else {}
        values = bridge.get_parameters(node, names) if names else {}
        rows = []
        for pname in names:
            d = descriptors[pname]
            rows.append(
                html.Div(
                    [
                        html.Span(pname[len(name) + 1 :], title=d.description),
                        parameter_control(node, pname, d, values[pname]),
                        html.Span(
                            d.description,
                            id={"type": "param-status", "node": node, "param": pname},
                            className="muted",
                        ),
                    ],
                    className="param",
                )
            )
        return html.Div(
            [
                html.Div(
                    [
                        html.H3(f"{name} ({type_name})", style={"margin": "4px 0"}),
                        html.Button(
                            "remove", id={"type": "remove-action", "node": node, "name": name}
                        ),
                    ],
                    className="row",
                ),
                *rows,
            ],
            className="card",
            id=f"action-{name}",
        )

    @app.callback(
        Output("actions-body", "children"),
        Input("actions-node", "value"),
        Input("actions-changed", "data"),
    )
    def actions_body(node: str | None, _changed: Any) -> Any:
        if not node:
            return _not_running("action_trigger")
        from edge_vision.actions.registry import discover_action_types
        from edge_vision.nodes.action_trigger import parse_action_entries

        try:
            params = bridge.get_parameters(node, ["actions", "plugin_dirs"])
            entries = parse_action_entries([e for e in params["actions"] or [] if e])
            types, errors = discover_action_types(list(params["plugin_dirs"] or []))
            cards = [instance_card(node, n, t) for n, t in entries]
        except (BridgeError, ValueError) as exc:
            return _msg(False, str(exc))
        type_rows = [
            html.Tr(
                [
                    html.Td(t),
                    html.Td(cls.__doc__.strip().splitlines()[0] if cls.__doc__ else ""),
                    html.Td(
                        ", ".join(f"{p.name}: {p.type_name}" for p in cls.properties().values())
                    ),
                ]
            )
            for t, cls in sorted(types.items())
        ]
        return html.Div(
            [
                html.H3("Types"),
                html.Table(
                    [html.Tr([html.Th("type"), html.Th("does"), html.Th("properties")]), *type_rows]
                ),
                html.Div([html.Span(e, className="err") for e in errors]),
                html.Div(
                    [
                        html.Label("new instance "),
                        dcc.Input(id="new-action-name", type="text", placeholder="name"),
                        dcc.Dropdown(
                            id="new-action-type",
                            options=sorted(types),
                            style={"width": "180px"},
                            placeholder="type",
                        ),
                        html.Button("Create", id="create-action"),
                    ],
                    className="row",
                ),
                html.H3("Instances"),
                *cards,
            ]
        )

    @app.callback(
        Output("create-action-status", "children"),
        Output("actions-changed", "data"),
        Input("create-action", "n_clicks"),
        State("actions-node", "value"),
        State("new-action-name", "value"),
        State("new-action-type", "value"),
        prevent_initial_call=True,
    )
    def create_action(_n: int, node: str, name: str | None, type_name: str | None) -> Any:
        from edge_vision.nodes.action_trigger import parse_action_entries

        if not _n:
            return dash.no_update, dash.no_update  # rendered, not clicked
        if not (name and type_name):
            return _msg(False, "give a name and a type"), dash.no_update
        try:
            current = [e for e in bridge.get_parameters(node, ["actions"])["actions"] if e]
            entries = [*current, f"{name}: {type_name}"]
            parse_action_entries(entries)  # the node checks too; this gives the reason early
            ok, reason = bridge.set_parameters(node, {"actions": entries})[0]
        except (BridgeError, ValueError) as exc:
            return _msg(False, str(exc)), dash.no_update
        if not ok:
            return _msg(False, f"refused: {reason}"), dash.no_update
        return _msg(True, f"created {name}"), time.time()

    @app.callback(
        Output("create-action-status", "children", allow_duplicate=True),
        Output("actions-changed", "data", allow_duplicate=True),
        Input({"type": "remove-action", "node": ALL, "name": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def remove_action(clicks: list[Any]) -> Any:
        from edge_vision.nodes.action_trigger import parse_action_entries

        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks or []):
            return dash.no_update, dash.no_update  # buttons rendered, none clicked
        node, name = trigger["node"], trigger["name"]
        try:
            current = [e for e in bridge.get_parameters(node, ["actions"])["actions"] if e]
            kept = [e for e in current if parse_action_entries([e])[0][0] != name]
            ok, reason = bridge.set_parameters(node, {"actions": kept or [""]})[0]
        except (BridgeError, ValueError) as exc:
            return _msg(False, str(exc)), dash.no_update
        if not ok:
            return _msg(False, f"refused: {reason}"), dash.no_update
        return _msg(True, f"removed {name}"), time.time()

    @app.callback(
        Output({"type": "param-status", "node": MATCH, "param": MATCH}, "children"),
        Input({"type": "param", "node": MATCH, "param": MATCH, "kind": ALL}, "value"),
        prevent_initial_call=True,
    )
    def set_param(values: list[Any]) -> Any:
        ids = ctx.inputs_list[0]
        if not ids or values[0] is None:
            return dash.no_update
        cid = ids[0]["id"]
        node, name, kind = cid["node"], cid["param"], cid["kind"]
        try:
            value = control_value(kind, values[0])
            current = bridge.get_parameters(node, [name])[name]
            if current == value or (kind == "string_array" and value == [""] and not current):
                return dash.no_update  # rendered or unchanged: nothing to set
            ok, reason = bridge.set_parameters(node, {name: value})[0]
        except (BridgeError, ValueError, TypeError) as exc:
            return _msg(False, str(exc))
        return _msg(True, f"set to {value!r}") if ok else _msg(False, f"refused: {reason}")

    # -- streams -----------------------------------------------------------------------------------
    def streams_page(topic: str | None = None, **_other: str) -> Any:
        """``?topic=/cam0/overlay`` opens the live view of that topic (a link to share)."""
        from edge_vision.models.zoo import list_models

        detectors = [m.name for m in list_models() if m.task == "detection"]
        topics = bridge.image_topics()
        overlay = [t for t in topics if t.endswith("/overlay")]
        if topic and topic not in topics:
            topics.append(topic)  # not published yet (a stream starting): shown once it is
        return html.Div(
            [
                html.Div(
                    [
                        html.H2("Streams"),
                        html.Div(id="streams-list"),
                        dcc.Interval(id="streams-tick", interval=2000),
                    ],
                    className="card",
                ),
                html.Div(
                    [
                        html.H3("Add a stream (video_source + detector)"),
                        html.Div(
                            [
                                dcc.Input(id="stream-name", placeholder="name (namespace)"),
                                dcc.Input(
                                    id="stream-uri",
                                    placeholder="uri: file, rtsp://, /dev/video0, webrtc://",
                                    size="60",
                                ),
                                html.Button("browser camera", id="stream-webcam"),
                                dcc.Dropdown(
                                    id="stream-model",
                                    options=detectors,
                                    value=detectors[0] if detectors else None,
                                    style={"width": "180px"},
                                ),
                                html.Label("fps cap"),
                                dcc.Input(id="stream-fps", type="number", value=0, min=0, size="5"),
                                html.Button("Add stream", id="stream-add"),
                            ],
                            className="row",
                        ),
                        html.Div(id="stream-add-status"),
                    ],
                    className="card",
                ),
                html.Div(
                    [
                        html.H3("Live view"),
                        dcc.Dropdown(
                            id="view-topic",
                            options=topics,
                            value=topic or (overlay or topics or [None])[0],
                            style={"width": "420px"},
                        ),
                        html.Div(id="view-stats", className="muted"),
                        html.Div(id="view", className="live"),
                        dcc.Interval(id="view-tick", interval=1000),
                    ],
                    className="card",
                ),
            ]
        )

    pages["/streams"] = streams_page
    pages["/"] = streams_page

    @app.callback(
        Output("stream-add-status", "children", allow_duplicate=True),
        Input({"type": "stop-stream", "name": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def stop(clicks: list[Any]) -> Any:
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks or []):
            return dash.no_update  # buttons rendered, none clicked
        stopped = stream_control.stop_stream(config.streams_dir, trigger["name"])
        return _msg(stopped, f"stopped {trigger['name']}" if stopped else "not found")

    @app.callback(Output("streams-list", "children"), Input("streams-tick", "n_intervals"))
    def streams_list(_n: int | None) -> Any:
        from edge_vision.srv import GetSourceInfo

        launched = {s.name: s for s in stream_control.launched_streams(config.streams_dir)}
        rows = []
        sources = bridge.sources()
        for node in sources:
            try:
                info = bridge.call(GetSourceInfo, f"{node}/get_info", timeout=2.0)
                state = f"{info.state} {info.width}x{info.height} {info.measured_fps:.1f} fps"
                uri, err = info.uri, info.last_error
            except BridgeError as exc:
                state, uri, err = "no answer", "", str(exc)
            ns = node.rsplit("/", 1)[0].strip("/")
            stop = (
                html.Button("stop", id={"type": "stop-stream", "name": ns})
                if ns in launched
                else ""
            )
            rows.append(
                html.Tr([html.Td(node), html.Td(uri), html.Td(state), html.Td(err), html.Td(stop)])
            )
        for name, s in launched.items():
            if not any(r.split("/")[1:2] == [name] for r in sources):
                state = "starting" if s.alive else "exited (see its log)"
                stop = html.Button("stop", id={"type": "stop-stream", "name": name})
                rows.append(
                    html.Tr(
                        [
                            html.Td(f"/{name}"),
                            html.Td(s.uri),
                            html.Td(state),
                            html.Td(),
                            html.Td(stop),
                        ]
                    )
                )
        header = html.Tr([html.Th(h) for h in ("source", "uri", "state", "error", "")])
        return html.Table([header, *rows]) if rows else _not_running("video_source")

    @app.callback(
        Output("stream-uri", "value"),
        Output("stream-add-status", "children", allow_duplicate=True),
        Input("stream-webcam", "n_clicks"),
        prevent_initial_call=True,
    )
    def webcam(_n: int) -> Any:
        if not _n:
            return dash.no_update, dash.no_update
        port = _free_port()
        link = f"http://127.0.0.1:{port}/"
        return f"webrtc://127.0.0.1:{port}", html.Span(
            [
                "after adding, open ",
                html.A(link, href=link, target="_blank"),
                " in the browser whose camera to send",
            ]
        )

    @app.callback(
        Output("stream-add-status", "children"),
        Input("stream-add", "n_clicks"),
        State("stream-name", "value"),
        State("stream-uri", "value"),
        State("stream-model", "value"),
        State("stream-fps", "value"),
        prevent_initial_call=True,
    )
    def add_stream(_n: int, name: Any, uri: Any, model: Any, fps: Any) -> Any:
        if not _n:
            return dash.no_update
        try:
            s = stream_control.start_stream(
                config.streams_dir, str(name or ""), str(uri or ""), str(model or ""),
                float(fps or 0),
            )  # fmt: skip
        except stream_control.StreamError as exc:
            return _msg(False, str(exc))
        return _msg(True, f"started /{s.name} (launcher pid {s.pid}, pipeline {s.pipeline})")

    @app.callback(Output("view", "children"), Input("view-topic", "value"))
    def view(topic: str | None) -> Any:
        if not topic:
            return _not_running("image topic")
        return html.Img(id="live-img", src=f"/video{topic}.mjpg", alt=topic)

    @app.callback(
        Output("view-topic", "options"),
        Output("view-stats", "children"),
        Input("view-tick", "n_intervals"),
        State("view-topic", "value"),
    )
    def view_stats(_n: int | None, topic: str | None) -> Any:
        stats = bridge.view_stats(topic) if topic else None
        text = ""
        if stats:
            latency = stats["latency_ms"]
            text = (
                f"{stats['topic']}: {stats['fps']} fps, latency "
                f"{'-' if latency is None else f'{latency} ms'} median "
                f"(max {stats['latency_max_ms']} ms), {stats['size'] or 'no frame yet'}, "
                f"{stats['frames']} frames"
            )
        return bridge.image_topics(), text

    @app.server.route("/video/<path:topic>.mjpg")
    def mjpeg(topic: str) -> Response:
        topic = "/" + topic
        error = bridge.check_image_topic(topic)
        if error:
            abort(404, error)
        view = bridge.view(topic)
        return Response(
            _mjpeg_frames(view, config.max_view_fps),
            mimetype="multipart/x-mixed-replace; boundary=frame",
            headers={"Cache-Control": "no-store"},
        )

    # -- models ------------------------------------------------------------------------------------
    def models_page() -> Any:
        return html.Div(
            [
                html.Div(
                    [html.H2("Models"), html.Div(id="models-table"), html.Div(id="pull-status")],
                    className="card",
                ),
                html.Div(
                    [
                        html.H3("Load into a node"),
                        html.Div(
                            [
                                dcc.Dropdown(
                                    id="load-node", placeholder="node", style={"width": "300px"}
                                ),
                                dcc.Dropdown(
                                    id="load-model", placeholder="model", style={"width": "220px"}
                                ),
                                dcc.Input(id="load-device", value="", placeholder="device"),
                                html.Button("Load", id="load-go"),
                                html.Button("Pull", id="pull-go"),
                            ],
                            className="row",
                        ),
                        html.Div(id="load-status"),
                    ],
                    className="card",
                ),
                html.Div(
                    [
                        html.H3("Import an ONNX model"),
                        html.Div(
                            [
                                dcc.Upload(html.Button("ONNX file"), id="import-onnx"),
                                dcc.Upload(html.Button("labels file"), id="import-labels"),
                                dcc.Input(id="import-name", placeholder="name"),
                                dcc.Dropdown(
                                    id="import-task",
                                    options=["classification", "detection"],
                                    value="classification",
                                    style={"width": "200px"},
                                ),
                                dcc.Input(id="import-decoder", placeholder="decoder (detection)"),
                                dcc.Input(id="import-size", placeholder="WxH, e.g. 224x224"),
                                html.Button("Import", id="import-go"),
                            ],
                            className="row",
                        ),
                        html.Div(id="import-status"),
                    ],
                    className="card",
                ),
            ]
        )

    pages["/models"] = models_page

    @app.callback(
        Output("models-table", "children"),
        Output("load-node", "options"),
        Output("load-model", "options"),
        Input("url", "pathname"),
        Input("pull-status", "children"),
        Input("import-status", "children"),
    )
    def models_table(_p: Any, _pulled: Any, _imported: Any) -> Any:
        from edge_vision.models.zoo import is_pulled, list_models

        models = list_models()
        rows = [
            {
                "name": m.name,
                "task": m.task,
                "source": m.source,
                "pulled": "yes" if is_pulled(m.name) else "no",
                "input": f"{m.input_size[0]}x{m.input_size[1]}",
                "description": m.description[:90],
            }
            for m in models
        ]
        table = dash_table.DataTable(
            data=rows,
            columns=[{"name": c, "id": c} for c in rows[0]] if rows else [],
            sort_action="native",
            style_table={"overflowX": "auto"},
            style_cell={
                "fontSize": 13,
                "textAlign": "left",
                "maxWidth": 480,
                "overflow": "hidden",
                "textOverflow": "ellipsis",
            },
            tooltip_data=[{"description": m.description} for m in models],
        )
        return table, bridge.model_nodes(), [m.name for m in models]

    @app.callback(
        Output("pull-status", "children"),
        Input("pull-go", "n_clicks"),
        State("load-model", "value"),
        prevent_initial_call=True,
    )
    def pull(_n: int, model: str | None) -> Any:
        from edge_vision.models.zoo import pull as zoo_pull

        if not _n:
            return dash.no_update
        if not model:
            return _msg(False, "choose a model")
        try:
            path = zoo_pull(model)
        except Exception as exc:  # fetch, verification or conversion: show why
            return _msg(False, f"pull {model} failed: {exc}")
        return _msg(True, f"pulled {model}: {path}")

    @app.callback(
        Output("load-status", "children"),
        Input("load-go", "n_clicks"),
        State("load-node", "value"),
        State("load-model", "value"),
        State("load-device", "value"),
        prevent_initial_call=True,
    )
    def load(_n: int, node: str | None, model: str | None, device: str | None) -> Any:
        from edge_vision.srv import LoadModel

        if not _n:
            return dash.no_update
        if not (node and model):
            return _msg(False, "choose a node and a model")
        try:
            response = bridge.call(
                LoadModel,
                f"{node}/load_model",
                LoadModel.Request(model=model, device=device or ""),
                timeout=120.0,  # a model load converts/compiles; it is slow on small CPUs
            )
        except BridgeError as exc:
            return _msg(False, str(exc))
        return _msg(response.success, response.message or f"{node} serves {response.model}")

    @app.callback(
        Output("import-status", "children"),
        Input("import-go", "n_clicks"),
        State("import-onnx", "contents"),
        State("import-onnx", "filename"),
        State("import-labels", "contents"),
        State("import-name", "value"),
        State("import-task", "value"),
        State("import-decoder", "value"),
        State("import-size", "value"),
        prevent_initial_call=True,
    )
    def import_onnx(
        _n: int,
        onnx: str | None,
        onnx_name: str | None,
        labels: str | None,
        name: str | None,
        task: str,
        decoder: str | None,
        size: str | None,
    ) -> Any:
        from edge_vision.models.zoo import ModelImportError, ModelLoadError, import_model

        if not _n:
            return dash.no_update
        if not (onnx and labels and name):
            return _msg(False, "give an ONNX file, a labels file and a name")
        try:
            input_size = None
            if size:
                w, _, h = size.lower().partition("x")
                input_size = (int(w), int(h))
            with tempfile.TemporaryDirectory(prefix="ev-import-") as tmp:
                onnx_path = Path(tmp) / Path(onnx_name or "model.onnx").name
                labels_path = Path(tmp) / "labels.txt"
                onnx_path.write_bytes(_upload_bytes(onnx))
                labels_path.write_bytes(_upload_bytes(labels))
                entry = import_model(
                    onnx_path,
                    name,
                    task,
                    labels_path,
                    decoder=decoder or None,
                    input_size=input_size,
                )
        except (ModelImportError, ModelLoadError, ValueError) as exc:
            return _msg(False, f"refused: {exc}")
        return _msg(True, f"imported {entry.name} ({entry.task}, {entry.num_labels} labels)")

    # -- prompts -----------------------------------------------------------------------------------
    def prompts_page() -> Any:
        nodes = bridge.prompt_nodes()
        if not nodes:
            body: Any = _not_running("open_vocab_detector")
        else:
            body = html.Div(
                [
                    dcc.Dropdown(
                        id="prompt-node", options=nodes, value=nodes[0], style={"width": "360px"}
                    ),
                    html.Div(id="prompt-current", className="muted"),
                    html.Div(
                        [
                            dcc.Input(
                                id="prompt-objects",
                                placeholder="objects, comma-separated: a person, a red car",
                                size="60",
                            ),
                            dcc.Input(
                                id="prompt-thresholds", placeholder="thresholds: 0.2 or 0.2, 0.3"
                            ),
                            html.Button("Set prompt", id="prompt-go"),
                        ],
                        className="row",
                    ),
                    html.Div(id="prompt-status"),
                ]
            )
        return html.Div([html.H2("Open-vocabulary prompts"), body], className="card")

    pages["/prompts"] = prompts_page

    @app.callback(
        Output("prompt-current", "children"),
        Output("prompt-status", "children"),
        Input("prompt-node", "value"),
        Input("prompt-go", "n_clicks"),
        State("prompt-objects", "value"),
        State("prompt-thresholds", "value"),
    )
    def prompt(node: str | None, n: int | None, objects: Any, thresholds: Any) -> Any:
        from edge_vision.srv import SetPrompt

        if not node:
            return "", ""
        status: Any = ""
        try:
            if ctx.triggered_id == "prompt-go" and n:
                request = SetPrompt.Request(
                    objects=[o.strip() for o in str(objects or "").split(",") if o.strip()],
                    thresholds=[float(t) for t in str(thresholds or "").split(",") if t.strip()],
                )
                response = bridge.call(SetPrompt, f"{node}/set_prompt", request, timeout=60.0)
                status = _msg(response.success, response.message or "prompt set")
            current = bridge.get_parameters(node, ["objects", "thresholds"])
        except (BridgeError, ValueError) as exc:
            return "", _msg(False, str(exc))
        text = (
            f"serving: {', '.join(current['objects'] or [])} (thresholds {current['thresholds']})"
        )
        return text, status

    # -- training ----------------------------------------------------------------------------------
    def training_page() -> Any:
        datasets, trainers = bridge.dataset_nodes(), bridge.trainers()
        dataset_body: Any = _not_running("dataset")
        if datasets:
            dataset_body = html.Div(
                [
                    dcc.Dropdown(
                        id="dataset-node",
                        options=datasets,
                        value=datasets[0],
                        style={"width": "360px"},
                    ),
                    html.Div(
                        [
                            dcc.Input(id="tags", placeholder="tags, comma-separated"),
                            html.Button("Set tags", id="tags-go"),
                            dcc.Input(id="rec-frames", type="number", placeholder="frames"),
                            dcc.Input(id="rec-duration", type="number", placeholder="seconds"),
                            dcc.Input(id="rec-interval", type="number", placeholder="interval s"),
                            html.Button("Record", id="rec-go"),
                            dcc.Upload(
                                html.Button("Upload images"), id="upload-images", multiple=True
                            ),
                        ],
                        className="row",
                    ),
                    html.Div(id="dataset-status"),
                    dcc.Graph(id="dataset-chart"),
                    dcc.Interval(id="dataset-tick", interval=2000),
                ]
            )
        trainer_body: Any = _not_running("trainer")
        if trainers:
            trainer_body = html.Div(
                [
                    dcc.Dropdown(
                        id="trainer-node",
                        options=trainers,
                        value=trainers[0],
                        style={"width": "360px"},
                    ),
                    html.Div(
                        [
                            html.Button("Start", id="train-start"),
                            html.Button("Stop", id="train-stop"),
                            html.Button("Resume", id="train-resume"),
                            html.Span(id="train-status"),
                        ],
                        className="row",
                    ),
                    html.Div(id="train-state", className="muted"),
                    dcc.Graph(id="train-chart"),
                    dcc.Interval(id="train-tick", interval=2000),
                ]
            )
        return html.Div(
            [
                html.Div([html.H2("Dataset"), dataset_body], className="card"),
                html.Div([html.H2("Training"), trainer_body], className="card"),
            ]
        )

    pages["/training"] = training_page

    # Requests and the chart are separate callbacks: Dash drops the answer of a callback run
    # that a newer run (the refresh tick) overtakes, which would lose a request's result.
    @app.callback(
        Output("dataset-status", "children"),
        Input("tags-go", "n_clicks"),
        Input("rec-go", "n_clicks"),
        Input("upload-images", "contents"),
        State("upload-images", "filename"),
        State("dataset-node", "value"),
        State("tags", "value"),
        State("rec-frames", "value"),
        State("rec-duration", "value"),
        State("rec-interval", "value"),
        prevent_initial_call=True,
    )
    def dataset_request(
        _tags: Any,
        _rec: Any,
        uploads: list[str] | None,
        filenames: list[str] | None,
        node: str | None,
        tags: str | None,
        frames: Any,
        duration: Any,
        interval: Any,
    ) -> Any:
        from edge_vision.srv import AddImage, RecordDataset, SetTags

        if not node or not ctx.triggered[0]["value"]:
            return dash.no_update  # rendered, not clicked
        trigger = ctx.triggered_id
        try:
            if trigger == "tags-go":
                names = [t.strip() for t in str(tags or "").split(",") if t.strip()]
                r = bridge.call(SetTags, f"{node}/set_tags", SetTags.Request(tags=names))
                return _msg(r.success, r.message or f"tags: {', '.join(r.tags)}")
            if trigger == "rec-go":
                request = RecordDataset.Request(
                    frames=int(frames or 0),
                    duration_s=float(duration or 0),
                    interval_s=float(interval or 0),
                )
                r = bridge.call(RecordDataset, f"{node}/record", request)
                return _msg(r.success, r.message or "recording")
            if trigger == "upload-images" and uploads:
                saved, failed = 0, []
                for content, filename in zip(uploads, filenames or [], strict=False):
                    request = AddImage.Request(filename=filename, data=_upload_bytes(content))
                    r = bridge.call(AddImage, f"{node}/add_image", request)
                    if r.success:
                        saved += 1
                    else:
                        failed.append(f"{filename}: {r.message}")
                return _msg(not failed, f"{saved} added" + "; ".join(["", *failed]))
        except (BridgeError, ValueError) as exc:
            return _msg(False, str(exc))
        return dash.no_update

    @app.callback(
        Output("dataset-chart", "figure"),
        Input("dataset-tick", "n_intervals"),
        State("dataset-node", "value"),
    )
    def dataset_chart(_t: Any, node: str | None) -> Any:
        from edge_vision.dashboard.ros_bridge import stats_to_dict
        from edge_vision.srv import GetDatasetStats

        if not node:
            return go.Figure()
        # The node's latched ~/stats when it arrived, else ask.
        stats = bridge.dataset_stats.get(node)
        if stats is None:
            try:
                stats = stats_to_dict(bridge.call(GetDatasetStats, f"{node}/get_stats").stats)
            except BridgeError as exc:
                return go.Figure(layout={"title": str(exc)})
        fig = go.Figure(
            [
                go.Bar(name="train", x=stats["tags"], y=stats["train"]),
                go.Bar(name="val", x=stats["tags"], y=stats["val"]),
            ]
        )
        fig.update_layout(
            barmode="stack",
            height=260,
            margin={"l": 40, "r": 10, "t": 30, "b": 30},
            title=f"{stats['images']} images in {stats['root']}; active tags "
            f"{', '.join(stats['active_tags']) or '-'}"
            + (f"; recording ({stats['recorded']} saved)" if stats["recording"] else ""),
        )
        return fig

    @app.callback(
        Output("train-status", "children"),
        Input("train-start", "n_clicks"),
        Input("train-stop", "n_clicks"),
        Input("train-resume", "n_clicks"),
        State("trainer-node", "value"),
        prevent_initial_call=True,
    )
    def train_control(_a: Any, _b: Any, _c: Any, node: str | None) -> Any:
        from std_srvs.srv import Trigger

        if not node or not isinstance(ctx.triggered_id, str) or not ctx.triggered[0]["value"]:
            return dash.no_update  # rendered, not clicked
        verb = ctx.triggered_id.removeprefix("train-")
        try:
            r = bridge.call(Trigger, f"{node}/{verb}")
        except BridgeError as exc:
            return _msg(False, str(exc))
        return _msg(r.success, r.message or verb)

    @app.callback(
        Output("train-state", "children"),
        Output("train-chart", "figure"),
        Input("train-tick", "n_intervals"),
        State("trainer-node", "value"),
    )
    def train_progress(_n: Any, node: str | None) -> Any:
        rows = bridge.training_progress(node) if node else []
        fig = go.Figure()
        if rows:
            x = list(range(len(rows)))
            fig.add_trace(go.Scatter(x=x, y=[r["loss"] for r in rows], name="loss"))
            for key in ("train_accuracy", "val_accuracy"):
                fig.add_trace(go.Scatter(x=x, y=[r[key] for r in rows], name=key, yaxis="y2"))
        fig.update_layout(
            height=260,
            margin={"l": 40, "r": 40, "t": 10, "b": 30},
            xaxis={"title": "progress message"},
            yaxis={"title": "loss"},
            yaxis2={
                "title": "accuracy",
                "overlaying": "y",
                "side": "right",
                "range": [0, 1.02],
                "dtick": 0.2,
                "tickmode": "linear",
                "showgrid": False,
            },
        )
        if not rows:
            return "no progress received yet", fig
        r = rows[-1]
        state = (
            f"{r['state']}: epoch {r['epoch']}/{r['epochs']}, step {r['step']}/{r['steps']}, "
            f"loss {r['loss']:.3f}, val {r['val_accuracy']:.3f} (best "
            f"{r['best_val_accuracy']:.3f}) {r['best_model']} {r['message']}"
        )
        return state, fig

    return app


def _upload_bytes(contents: str) -> bytes:
    """dcc.Upload's ``data:...;base64,...`` -> bytes."""
    _, _, data = contents.partition(",")
    return base64.b64decode(data)


def _mjpeg_frames(view: Any, max_fps: float) -> Iterator[bytes]:
    from edge_vision.outputs.frame_hub import Pacer
    from edge_vision.outputs.mjpeg import encode_jpeg

    hub = view.hub
    hub.acquire("dashboard")
    pacer = Pacer(max_fps)
    seq = 0
    try:
        while True:
            delay = pacer.delay()
            if delay:
                time.sleep(delay)
            frame = hub.wait_newer(seq, timeout=5.0)
            view.last_used = time.monotonic()
            if frame is None:
                continue  # the topic is quiet; the browser keeps the last picture
            seq = frame.seq
            data = encode_jpeg(frame.image, 80)
            pacer.sent()
            yield (
                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                + str(len(data)).encode()
                + b"\r\n\r\n"
                + data
                + b"\r\n"
            )
    finally:
        hub.release("dashboard")
