"""The ``record`` action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_vision.actions.base import ActionError, EventFilter, prop
from edge_vision.events.model import Event

__all__ = ["RecordAction"]


class RecordAction(EventFilter):
    """Ask the stream's recorder for a clip around the event (pre-roll included)."""

    type_name = "record"

    duration_s: float = prop(
        5.0, "Seconds to record after the event; extended while it lasts.", min=0.0, max=3600.0
    )
    max_duration_s: float = prop(
        60.0, "Upper bound on the clip length in seconds.", min=0.0, max=86400.0
    )
    pre_s: float = prop(5.0, "Seconds of pre-roll before the event.", min=0.0, max=600.0)

    def on_event(self, event: Event, args: Mapping[str, Any]) -> str:
        duration = self.setting("duration_s", args)
        max_duration = self.setting("max_duration_s", args)
        pre = self.setting("pre_s", args)
        if duration > max_duration:
            raise ActionError(
                f"record {self.name}: duration_s {duration} exceeds max_duration_s {max_duration}"
            )
        try:
            path = self.context.request_recording(event, duration, max_duration, pre)
        except ActionError as exc:
            raise ActionError(f"record {self.name}: {exc}") from exc
        except Exception as exc:
            raise ActionError(f"record {self.name}: {type(exc).__name__}: {exc}") from exc
        self.logger.info(f"record {self.name}: event {event.id} -> {path}")
        return path
