"""The ``alert`` action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_vision.actions.base import EventFilter, format_event, prop
from edge_vision.events.model import Event

__all__ = ["AlertAction"]


class AlertAction(EventFilter):
    """Publish an alert text for the event (the actions node publishes it on a topic)."""

    type_name = "alert"

    template: str = prop(
        "{label} on {stream} (score {max_score:.2f})",
        "str.format template over the event fields (Event.to_dict() plus duration_s, action).",
    )

    def on_event(self, event: Event, args: Mapping[str, Any]) -> str:
        text = format_event(self.setting("template", args), event, action=self.name)
        self.context.publish_alert(self.name, text, event)
        return text
