"""Events page (``/events``): the newest ``events_limit`` events from the event store (or the
event_aggregators' ``~/query``) as a table that filters and sorts in the browser, and a
timeline of confidence against time, one trace per class; refreshed every ``refresh_s``."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, dash_table, dcc, html

from edge_vision.dashboard.pages.common import PageContext, status_text
from edge_vision.dashboard.ros_bridge import BridgeError

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


def register(app: dash.Dash, context: PageContext) -> Callable[..., Any]:
    """The events page's callbacks; returns its layout function."""
    bridge, config = context.bridge, context.config
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
            return [], timeline_figure([]), status_text(False, str(exc))
        return (
            event_rows(events),
            timeline_figure(events),
            f"{len(events)} events (newest {config.events_limit}) from {source}",
        )

    return events_page
