"""Actions page (``/actions``): an action_trigger node's action types (with their properties)
and instances; create and remove instances, and edit each instance's parameters with controls
chosen from their descriptors (set on the node at once, its answer shown next to the control)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dash
from dash import ALL, MATCH, Input, Output, State, ctx, dcc, html

from edge_vision.dashboard.pages.common import (
    PageContext,
    control_value,
    not_running,
    parameter_control,
    status_text,
)
from edge_vision.dashboard.ros_bridge import BridgeError


def register(app: dash.Dash, context: PageContext) -> Callable[..., Any]:
    """The actions page's callbacks; returns its layout function."""
    bridge = context.bridge

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
            return not_running("action_trigger")
        from edge_vision.actions.registry import discover_action_types
        from edge_vision.nodes.action_trigger import parse_action_entries

        try:
            params = bridge.get_parameters(node, ["actions", "plugin_dirs"])
            entries = parse_action_entries([e for e in params["actions"] or [] if e])
            types, errors = discover_action_types(list(params["plugin_dirs"] or []))
            cards = [instance_card(node, n, t) for n, t in entries]
        except (BridgeError, ValueError) as exc:
            return status_text(False, str(exc))
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
            return status_text(False, "give a name and a type"), dash.no_update
        try:
            current = [e for e in bridge.get_parameters(node, ["actions"])["actions"] if e]
            entries = [*current, f"{name}: {type_name}"]
            parse_action_entries(entries)  # the node checks too; this gives the reason early
            ok, reason = bridge.set_parameters(node, {"actions": entries})[0]
        except (BridgeError, ValueError) as exc:
            return status_text(False, str(exc)), dash.no_update
        if not ok:
            return status_text(False, f"refused: {reason}"), dash.no_update
        return status_text(True, f"created {name}"), time.time()

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
            return status_text(False, str(exc)), dash.no_update
        if not ok:
            return status_text(False, f"refused: {reason}"), dash.no_update
        return status_text(True, f"removed {name}"), time.time()

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
            return status_text(False, str(exc))
        return (
            status_text(True, f"set to {value!r}")
            if ok
            else status_text(False, f"refused: {reason}")
        )

    return actions_page
