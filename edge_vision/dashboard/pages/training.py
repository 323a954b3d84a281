"""Training page (``/training``): a dataset node (set tags, record frames, upload images, the
label distribution per tag) and a trainer (start, stop, resume; state line and progress
chart)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html

from edge_vision.dashboard.pages.common import PageContext, not_running, status_text, upload_bytes
from edge_vision.dashboard.ros_bridge import BridgeError


def register(app: dash.Dash, context: PageContext) -> Callable[..., Any]:
    """The training page's callbacks; returns its layout function."""
    bridge = context.bridge

    def training_page() -> Any:
        datasets, trainers = bridge.dataset_nodes(), bridge.trainers()
        dataset_body: Any = not_running("dataset")
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
        trainer_body: Any = not_running("trainer")
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
                return status_text(r.success, r.message or f"tags: {', '.join(r.tags)}")
            if trigger == "rec-go":
                request = RecordDataset.Request(
                    frames=int(frames or 0),
                    duration_s=float(duration or 0),
                    interval_s=float(interval or 0),
                )
                r = bridge.call(RecordDataset, f"{node}/record", request)
                return status_text(r.success, r.message or "recording")
            if trigger == "upload-images" and uploads:
                saved, failed = 0, []
                for content, filename in zip(uploads, filenames or [], strict=False):
                    request = AddImage.Request(filename=filename, data=upload_bytes(content))
                    r = bridge.call(AddImage, f"{node}/add_image", request)
                    if r.success:
                        saved += 1
                    else:
                        failed.append(f"{filename}: {r.message}")
                return status_text(not failed, f"{saved} added" + "; ".join(["", *failed]))
        except (BridgeError, ValueError) as exc:
            return status_text(False, str(exc))
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
            return status_text(False, str(exc))
        return status_text(r.success, r.message or verb)

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

    return training_page
