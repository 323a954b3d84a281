"""Action plugins: what happens when a rule matches an event (log, alert, record, ...).

- ``base``: ``Action`` with typed properties, ``EventFilter``, ``ActionContext``;
- ``builtin``: the built-in action types;
- ``registry``: discovery of built-ins, entry points (group ``edge_vision.actions``) and
  plugin files;
- ``runner``: one worker thread with a bounded queue per action instance.
"""

from edge_vision.actions.base import (
    Action,
    ActionContext,
    ActionError,
    EventFilter,
    LoggingContext,
    PropertySpec,
    format_event,
    prop,
)
from edge_vision.actions.registry import ENTRY_POINT_GROUP, discover_action_types
from edge_vision.actions.runner import ActionResult, ActionRunner, RunnerStats

__all__ = [
    "ENTRY_POINT_GROUP",
    "Action",
    "ActionContext",
    "ActionError",
    "ActionResult",
    "ActionRunner",
    "EventFilter",
    "LoggingContext",
    "PropertySpec",
    "RunnerStats",
    "discover_action_types",
    "format_event",
    "prop",
]
