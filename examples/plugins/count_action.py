"""A sample action plugin: copy this file into a plugin directory and adapt it.

The actions node imports every ``*.py`` file in its plugin directories and registers each
``Action`` subclass with a ``type_name``. Properties are declared as annotated class
attributes (str, int, float, bool or list[str]); each becomes a ROS parameter of the action
instance, validated when set, and a rule may override it for one firing through its args.

This one counts the events it accepts and, every ``every`` events, appends ``message``
(formatted with ``{count}`` and the event fields) to ``output_path``, or logs it when
``output_path`` is empty.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_vision.actions.base import Action, ActionContext, EventFilter, format_event, prop
from edge_vision.events.model import Event


class CountAction(EventFilter, Action):  # EventFilter adds labels/min_score/streams/... filters
    """Count events; report the count every N of them."""

    type_name = "count"

    every: int = prop(1, "Report every this many events.", min=1)
    message: str = prop("{count} events, the last {label} on {stream}", "Report template.")
    output_path: str = prop("", "File to append reports to; empty = log them.")

    def __init__(self, name: str, context: ActionContext) -> None:
        super().__init__(name, context)
        self._count = 0
        self._lock = threading.Lock()  # on_event runs on the runner's worker thread

    def on_event(self, event: Event, args: Mapping[str, Any]) -> str | None:
        with self._lock:
            self._count += 1
            count = self._count
        if count % self.setting("every", args):
            return None
        text = format_event(self.setting("message", args), event, count=count, action=self.name)
        path = self.setting("output_path", args)
        if path:
            with Path(path).open("a", encoding="utf-8") as out:
                out.write(text + "\n")
        else:
            self.logger.info(f"count {self.name}: {text}")
        return text
