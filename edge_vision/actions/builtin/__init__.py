"""The built-in actions: log, alert, record, webhook and redis."""

from __future__ import annotations

from edge_vision.actions.base import Action
from edge_vision.actions.builtin.alert import AlertAction
from edge_vision.actions.builtin.log import LogAction
from edge_vision.actions.builtin.record import RecordAction
from edge_vision.actions.builtin.redis_stream import RedisAction
from edge_vision.actions.builtin.webhook import WebhookAction

__all__ = [
    "BUILTIN_ACTIONS",
    "AlertAction",
    "LogAction",
    "RecordAction",
    "RedisAction",
    "WebhookAction",
]

BUILTIN_ACTIONS: tuple[type[Action], ...] = (
    LogAction,
    AlertAction,
    RecordAction,
    WebhookAction,
    RedisAction,
)
