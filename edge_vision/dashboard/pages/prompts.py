"""Prompts page (``/prompts``): an open_vocab_detector's objects and thresholds, set with its
``~/set_prompt``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dash
from dash import Input, Output, State, ctx, dcc, html

from edge_vision.dashboard.pages.common import PageContext, not_running, status_text
from edge_vision.dashboard.ros_bridge import BridgeError


def register(app: dash.Dash, context: PageContext) -> Callable[..., Any]:
    """The prompts page's callback; returns its layout function."""
    bridge = context.bridge

    def prompts_page() -> Any:
        nodes = bridge.prompt_nodes()
        if not nodes:
            body: Any = not_running("open_vocab_detector")
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
                status = status_text(response.success, response.message or "prompt set")
            current = bridge.get_parameters(node, ["objects", "thresholds"])
        except (BridgeError, ValueError) as exc:
            return "", status_text(False, str(exc))
        text = (
            f"serving: {', '.join(current['objects'] or [])} (thresholds {current['thresholds']})"
        )
        return text, status

    return prompts_page
