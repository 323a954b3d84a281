"""The ``log`` action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_vision.actions.base import EventFilter, format_event, prop
from edge_vision.events.model import Event

__all__ = ["LogAction"]


class LogAction(EventFilter):
    """Log each event through the host's logger."""

    type_name = "log"

    level: str = prop("info", "Log level.", choices=("debug", "info", "warning", "error"))
    template: str = prop(
        "{action}: {state} {label} ({max_score:.2f}) on {stream}, track {track_id}, "
        "{frames} frames, event {id}",
        "str.format template over the event fields (Event.to_dict() plus duration_s, action).",
    )

    def on_event(self, event: Event, args: Mapping[str, Any]) -> None:
        text = format_event(self.setting("template", args), event, action=self.name)
        getattr(self.logger, self.setting("level", args))(text)
