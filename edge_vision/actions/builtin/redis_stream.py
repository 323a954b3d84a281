"""The ``redis`` action."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge_vision.actions.base import ActionContext, EventFilter, prop
from edge_vision.events.model import Event

if TYPE_CHECKING:
    from edge_vision.outputs.redis_stream import BufferedRedisStream

__all__ = ["RedisAction"]


class RedisAction(EventFilter):
    """XADD each event as JSON to a Redis stream, buffering while Redis is unreachable.

    The entry's ``field`` holds ``Event.to_dict()`` as JSON plus ``"action"``: the instance
    name.
    Delivery is asynchronous (``on_event`` only buffers); see
    ``edge_vision.outputs.redis_stream`` for the guarantees. Changing host, port, stream,
    field, maxlen or buffer_size takes effect with the next event (the writer is recreated;
    messages still buffered for the old one get ``close_timeout_s`` to go out).
    """

    type_name = "redis"

    # Every state change is worth exporting, unlike a notification.
    once_per_event = False

    host: str = prop("127.0.0.1", "Redis host.")
    port: int = prop(6379, "Redis port.", min=1, max=65535)
    stream: str = prop("edge_vision:events", "Stream key to XADD to.")
    field: str = prop("metadata", "Entry field holding the JSON.")
    maxlen: int = prop(10000, "Approximate stream length cap (MAXLEN ~); 0 = no cap.", min=0)
    buffer_size: int = prop(
        1000, "Messages buffered while Redis is unreachable; the oldest go first.", min=1
    )
    close_timeout_s: float = prop(
        2.0, "Seconds to deliver what is buffered at close or reconfiguration.", min=0.0,
        max=60.0,
    )  # fmt: skip

    def __init__(self, name: str, context: ActionContext) -> None:
        super().__init__(name, context)
        self._writer: BufferedRedisStream | None = None
        self._writer_config: tuple[Any, ...] = ()
        self._lock = threading.Lock()  # on_event (worker) vs stats()/close() from elsewhere

    def _config(self) -> tuple[Any, ...]:
        return (self.host, self.port, self.stream, self.field, self.maxlen, self.buffer_size)

    def writer(self) -> BufferedRedisStream:
        """The writer for the current properties, (re)created when they changed."""
        from edge_vision.outputs.redis_stream import BufferedRedisStream

        config = self._config()
        with self._lock:
            old = None
            if self._writer is not None and config != self._writer_config:
                old, self._writer = self._writer, None
            if self._writer is None:
                host, port, stream, field, maxlen, buffer_size = config
                self._writer = BufferedRedisStream(
                    host, port, stream, maxlen=maxlen or None, buffer_size=buffer_size,
                    field=field, logger=self.logger,
                )  # fmt: skip
                self._writer_config = config
            writer = self._writer
        if old is not None:
            self.logger.info(f"redis {self.name}: now writing to {writer.address}")
            old.close(self.close_timeout_s)
        return writer

    def on_event(self, event: Event, args: Mapping[str, Any]) -> None:
        payload = json.dumps({**event.to_dict(), "action": self.name})
        self.writer().add(payload)

    def close(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(self.close_timeout_s)
