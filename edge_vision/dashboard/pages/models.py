"""Models page (``/models``): the model zoo and imported models (task, source, input size,
pulled or not); pull a model, load one into an inference node (``~/load_model``), and import
an ONNX model with its labels."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, State, dash_table, dcc, html

from edge_vision.dashboard.pages.common import PageContext, status_text, upload_bytes
from edge_vision.dashboard.ros_bridge import BridgeError


def register(app: dash.Dash, context: PageContext) -> Callable[..., Any]:
    """The models page's callbacks; returns its layout function."""
    bridge = context.bridge

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
            return status_text(False, "choose a model")
        try:
            path = zoo_pull(model)
        except Exception as exc:  # fetch, verification or conversion: show why
            return status_text(False, f"pull {model} failed: {exc}")
        return status_text(True, f"pulled {model}: {path}")

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
            return status_text(False, "choose a node and a model")
        try:
            response = bridge.call(
                LoadModel,
                f"{node}/load_model",
                LoadModel.Request(model=model, device=device or ""),
                timeout=120.0,  # a model load converts/compiles; it is slow on small CPUs
            )
        except BridgeError as exc:
            return status_text(False, str(exc))
        return status_text(response.success, response.message or f"{node} serves {response.model}")

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
            return status_text(False, "give an ONNX file, a labels file and a name")
        try:
            input_size = None
            if size:
                w, _, h = size.lower().partition("x")
                input_size = (int(w), int(h))
            with tempfile.TemporaryDirectory(prefix="ev-import-") as tmp:
                onnx_path = Path(tmp) / Path(onnx_name or "model.onnx").name
                labels_path = Path(tmp) / "labels.txt"
                onnx_path.write_bytes(upload_bytes(onnx))
                labels_path.write_bytes(upload_bytes(labels))
                entry = import_model(
                    onnx_path,
                    name,
                    task,
                    labels_path,
                    decoder=decoder or None,
                    input_size=input_size,
                )
        except (ModelImportError, ModelLoadError, ValueError) as exc:
            return status_text(False, f"refused: {exc}")
        return status_text(True, f"imported {entry.name} ({entry.task}, {entry.num_labels} labels)")

    return models_page
