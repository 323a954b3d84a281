"""``BufferedRedisStream``: a never-blocking, outage-tolerant writer to one Redis stream.

``add()`` appends to a bounded in-memory buffer and returns; a background thread drains the
buffer in order with ``XADD <stream> [MAXLEN ~ n] * <field> <payload>``, up to ``BATCH``
messages per round trip.

Delivery guarantees:

- Order is kept: a batch is sent before any later message.
- A message leaves the buffer only after Redis acknowledged it. Each batch is one MULTI/EXEC
  transaction, so a connection lost before EXEC is processed adds nothing and the whole
  batch is retried. The only way to get a duplicate is Redis executing EXEC and the
  connection dropping before its reply arrives; then the batch is sent again (at-least-once).
- While Redis is unreachable messages wait in the buffer; the thread retries with backoff
  (0.1 s doubling to 5 s) and logs once when the outage starts and once when it ends.
- When the buffer is full the *oldest* message is dropped and counted in ``stats().dropped``
  with a rate-limited warning. A message Redis rejects (e.g. the key holds another type) is
  counted in ``stats().rejected`` and logged; it would fail again, so it is not retried.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["BATCH", "BufferedRedisStream", "RedisStreamStats"]

BATCH = 100  # messages per MULTI/EXEC round trip
_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0
_DROP_WARN_INTERVAL_S = 10.0


@dataclass(frozen=True)
class RedisStreamStats:
    sent: int  # acknowledged by Redis
    buffered: int  # waiting (including a batch in flight)
    dropped: int  # oldest dropped because the buffer was full, or left at close
    rejected: int  # refused by Redis with an error reply (not retried)
    connected: bool  # the last exchange with Redis succeeded
    last_error: str


class BufferedRedisStream:
    """Buffered writer to ``stream`` on ``host:port``; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        stream: str = "edge_vision:events",
        *,
        maxlen: int | None = None,
        buffer_size: int = 1000,
        field: str = "metadata",
        db: int = 0,
        connect_timeout_s: float = 1.0,
        logger: Any = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        self.host, self.port, self.stream, self.field = host, port, stream, field
        self.maxlen = maxlen if maxlen else None
        self.buffer_size = buffer_size
        self.logger = logger if logger is not None else logging.getLogger(__name__)
        # redis-py retries internally by default; this class does its own retrying so that it
        # alone decides about backoff and never resends a batch behind our back.
        self._client = redis.Redis(
            host=host,
            port=port,
            db=db,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=max(5.0, connect_timeout_s),
            retry=Retry(NoBackoff(), 0),
        )
        self._buf: deque[tuple[int, bytes | str]] = deque()
        self._cond = threading.Condition()
        self._next_seq = 0
        self._inflight_last = -1  # seq of the last message of the batch being sent
        self._dropped_inflight = 0  # dropped while in flight: delivered if the batch succeeds
        self._sent = 0
        self._dropped = 0
        self._rejected = 0
        self._connected = False
        self._in_outage = False
        self._last_error = ""
        self._drops_unreported = 0
        self._last_drop_warning = -_DROP_WARN_INTERVAL_S
        self._closing = False
        self._close_deadline = 0.0
        self._wake = threading.Event()  # cuts a backoff sleep short at close
        self._thread = threading.Thread(target=self._run, name=f"redis-{stream}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.stream}"

    def add(self, payload: str | bytes | Mapping[str, Any]) -> None:
        """Queue one message (a Mapping is sent as JSON). Never blocks on Redis."""
        if isinstance(payload, Mapping):
            payload = json.dumps(payload, separators=(",", ":"))
        with self._cond:
            if self._closing:
                self._dropped += 1
                self._note_drop()
                return
            if len(self._buf) >= self.buffer_size:
                seq, _ = self._buf.popleft()
                if seq <= self._inflight_last:
                    # Part of the batch being sent: whether it was lost is known only when
                    # that batch completes (see _finish_batch).
                    self._dropped_inflight += 1
                else:
                    self._dropped += 1
                self._note_drop()
            self._buf.append((self._next_seq, payload))
            self._next_seq += 1
            self._cond.notify()

    def stats(self) -> RedisStreamStats:
        with self._cond:
            return RedisStreamStats(
                sent=self._sent,
                buffered=len(self._buf),
                dropped=self._dropped,
                rejected=self._rejected,
                connected=self._connected,
                last_error=self._last_error,
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every buffered message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 2.0) -> None:
        """Send what is buffered for up to ``timeout`` s (no retrying while Redis is down),
        then stop. Messages still buffered are counted as dropped and logged."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(timeout + 1.0)
        with self._cond:
            left = len(self._buf)
            if left and not self._thread.is_alive():
                self._buf.clear()
                self._dropped += left
        if left:
            self.logger.warning(f"{self.address}: closed with {left} message(s) not delivered")
        self._client.close()

    def __enter__(self) -> BufferedRedisStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker -------------------------------------------------------------------------------

    def _note_drop(self) -> None:
        # Called with self._cond held. One warning per interval, with the count since the last.
        self._drops_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARN_INTERVAL_S:
            self.logger.warning(
                f"{self.address}: buffer full ({self.buffer_size}); dropped "
                f"{self._drops_unreported} oldest message(s)"
            )
            self._drops_unreported = 0
            self._last_drop_warning = now

    def _run(self) -> None:
        # One PING up front so that stats().connected and the outage log say early whether
        # Redis is there, not only once the first message is sent.
        try:
            self._client.ping()
            with self._cond:
                self._connected = True
        except redis.RedisError as exc:
            self._batch_failed(exc)
        backoff = _BACKOFF_MIN_S
        while True:
            with self._cond:
                while not self._buf and not self._closing:
                    self._cond.wait()
                if not self._buf or (self._closing and time.monotonic() > self._close_deadline):
                    return
                batch = list(islice(self._buf, BATCH))
                self._inflight_last = batch[-1][0]
            try:
                results = self._send(batch)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._batch_failed(exc)
                if self._closing:
                    return  # no retrying at close: Redis is down, waiting would not help
                self._wake.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            except Exception as exc:
                # Not a connection problem (e.g. a bug or an unexpected reply): treat like
                # an outage so nothing is lost, but log it every time.
                self.logger.error(f"{self.address}: XADD failed: {type(exc).__name__}: {exc}")
                self._batch_failed(exc)
                if self._closing:
                    return
                self._wake.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            backoff = _BACKOFF_MIN_S
            self._finish_batch(batch, results)

    def _send(self, batch: list[tuple[int, bytes | str]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=True)
        for _, payload in batch:
            pipe.xadd(self.stream, {self.field: payload}, maxlen=self.maxlen, approximate=True)
        # raise_on_error=False: one rejected command must not hide the others' results.
        return pipe.execute(raise_on_error=False)

    def _batch_failed(self, exc: Exception) -> None:
        with self._cond:
            self._inflight_last = -1
            # The batch was not stored, so what overflow took from it is really lost.
            self._dropped += self._dropped_inflight
            self._dropped_inflight = 0
            self._connected = False
            self._last_error = f"{type(exc).__name__}: {exc}"
            first = not self._in_outage
            self._in_outage = True
            buffered = len(self._buf)
        if first:
            self.logger.warning(
                f"{self.address}: Redis unavailable ({self._last_error}); buffering up to "
                f"{self.buffer_size} messages ({buffered} now) and retrying"
            )

    def _finish_batch(self, batch: list[tuple[int, bytes | str]], results: list[Any]) -> None:
        last_seq = batch[-1][0]
        rejected = [r for r in results if isinstance(r, Exception)]
        with self._cond:
            # Overflow may have removed some of the batch from the left meanwhile; remove the
            # rest by sequence number, never by count.
            while self._buf and self._buf[0][0] <= last_seq:
                self._buf.popleft()
            self._inflight_last = -1
            self._dropped_inflight = 0  # they were delivered after all
            self._sent += len(batch) - len(rejected)
            self._rejected += len(rejected)
            if rejected:
                self._last_error = f"{type(rejected[0]).__name__}: {rejected[0]}"
            self._connected = True
            recovered = self._in_outage
            self._in_outage = False
            self._cond.notify_all()
        if recovered:
            self.logger.info(f"{self.address}: Redis reachable again; sending buffered messages")
        if rejected:
            self.logger.error(
                f"{self.address}: Redis rejected {len(rejected)} message(s): {self._last_error}"
            )
