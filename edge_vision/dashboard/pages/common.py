"""What several pages share: the :class:`PageContext` that each page's ``register`` gets,
status messages ("ok", "err", "not running"), uploaded file contents, and the controls made
from ROS parameter descriptors."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dash import dcc, html

from edge_vision.dashboard.ros_bridge import RosBridge

if TYPE_CHECKING:
    from edge_vision.dashboard.app import DashboardConfig


@dataclass(frozen=True)
class PageContext:
    """What the pages' callbacks read: ROS (through the bridge) and the dashboard's settings."""

    bridge: RosBridge
    config: DashboardConfig


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


def status_text(ok: bool, text: str) -> html.Span:
    return html.Span(text, className="ok" if ok else "err")


def not_running(what: str) -> html.Div:
    return html.Div(f"{what}: not running (none found in the ROS graph)", className="muted")


def upload_bytes(contents: str) -> bytes:
    """dcc.Upload's ``data:...;base64,...`` -> bytes."""
    _, _, data = contents.partition(",")
    return base64.b64decode(data)
