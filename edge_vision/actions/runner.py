"""``ActionRunner``: one worker thread and a bounded queue per action instance.

``submit`` decides filter, once-per-event and cooldown on the caller's thread, so the outcome
is deterministic and returned at once; only ``on_event`` runs on the worker. A slow or hung
action therefore never blocks the caller: when its queue is full, further events are dropped
and counted.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_vision.actions.base import Action, ActionError
from edge_vision.events.model import Event

__all__ = ["SUBMIT_RESULTS", "ActionResult", "ActionRunner", "RunnerStats"]

#: What ``submit`` returns. "error" means ``accepts`` raised; "closed" that the runner is closed.
SUBMIT_RESULTS = (
    "queued",
    "skipped_disabled",
    "skipped_filter",
    "skipped_once",
    "skipped_cooldown",
    "dropped",
    "error",
    "closed",
)


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one ``on_event`` call, given to the ``on_done`` hook."""

    action: str
    rule: str
    event_id: str
    ok: bool
    error: str  # "" when ok
    detail: str  # what on_event returned (e.g. a clip path), "" for None
    latency_s: float  # submit to completion


@dataclass(frozen=True)
class RunnerStats:
    fired: int = 0  # on_event returned normally
    failed: int = 0  # on_event (or accepts) raised
    dropped: int = 0  # queue full, or abandoned at close
    skipped_disabled: int = 0  # the instance's ``enabled`` property was false
    skipped_filter: int = 0
    skipped_once: int = 0
    skipped_cooldown: int = 0
    queued: int = 0  # waiting in the queue now
    last_error: str = ""
    last_latency_s: float = 0.0


@dataclass(frozen=True)
class _Job:
    event: Event
    args: Mapping[str, Any]
    rule: str
    submitted: float


class ActionRunner:
    """Runs ``action.on_event`` on its own daemon thread.

    ``once_per_event`` remembers the last ``seen_ids`` event ids (LRU); an id is remembered
    only once its event is queued, so a dropped event may fire on a later update. The cooldown
    is measured with ``time.monotonic`` from the last queued submit. Both may be overridden per
    rule through ``args`` like any property.
    """

    def __init__(
        self,
        action: Action,
        queue_size: int = 100,
        logger: Any = None,
        on_done: Callable[[ActionResult], None] | None = None,
        *,
        seen_ids: int = 10_000,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.action = action
        self.logger = logger if logger is not None else logging.getLogger("edge_vision.actions")
        self.on_done = on_done
        self._queue_size = queue_size
        self._seen_max = seen_ids
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._last_accept: float | None = None
        self._counts = dict.fromkeys(
            (
                "fired",
                "failed",
                "dropped",
                "skipped_disabled",
                "skipped_filter",
                "skipped_once",
                "skipped_cooldown",
            ),
            0,
        )
        self._last_error = ""
        self._last_latency = 0.0
        self._thread = threading.Thread(
            target=self._work, name=f"action-{action.name}", daemon=True
        )
        self._thread.start()

    @property
    def name(self) -> str:
        return self.action.name

    def submit(self, event: Event, args: Mapping[str, Any] | None = None, rule: str = "") -> str:
        """Queue ``event`` for the action unless filtered, already handled, cooling down or the
        queue is full. Returns one of ``SUBMIT_RESULTS``; never blocks on the action."""
        args = args or {}
        with self._cond:
            if self._closing:
                return "closed"
            try:
                if not self.action.enabled:
                    self._counts["skipped_disabled"] += 1
                    return "skipped_disabled"
                if not self.action.accepts(event):
                    self._counts["skipped_filter"] += 1
                    return "skipped_filter"
                once = self.action.setting("once_per_event", args)
                cooldown = self.action.setting("cooldown_s", args)
            except Exception as exc:
                self._record_failure(f"rule {rule!r}: {type(exc).__name__}: {exc}")
                return "error"
            if once and event.id in self._seen:
                self._seen.move_to_end(event.id)
                self._counts["skipped_once"] += 1
                return "skipped_once"
            now = time.monotonic()
            last = self._last_accept
            if cooldown > 0 and last is not None and now - last < cooldown:
                self._counts["skipped_cooldown"] += 1
                return "skipped_cooldown"
            if len(self._jobs) >= self._queue_size:
                self._counts["dropped"] += 1
                return "dropped"
            self._jobs.append(_Job(event, dict(args), rule, now))
            self._last_accept = now
            # Remembered even when this rule does not ask for once: another rule might.
            self._seen[event.id] = None
            self._seen.move_to_end(event.id)
            if len(self._seen) > self._seen_max:
                self._seen.popitem(last=False)
            self._cond.notify()
            return "queued"

    def stats(self) -> RunnerStats:
        with self._cond:
            return RunnerStats(
                **self._counts,
                queued=len(self._jobs),
                last_error=self._last_error,
                last_latency_s=self._last_latency,
            )

    def close(self, timeout: float = 5.0) -> bool:
        """Stop accepting events, let the worker drain the queue for up to ``timeout`` seconds,
        then close the action. Returns False if the worker had not finished in time (the
        remaining queued events are dropped and counted)."""
        with self._cond:
            if self._closing and not self._thread.is_alive():
                return True
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        finished = not self._thread.is_alive()
        if not finished:
            with self._cond:
                abandoned = len(self._jobs)
                self._jobs.clear()
                self._counts["dropped"] += abandoned
            self.logger.warning(
                f"action {self.name}: still busy after {timeout:.1f} s at close; "
                f"{abandoned} queued event(s) dropped"
            )
        try:
            self.action.close()
        except Exception as exc:
            self.logger.error(f"action {self.name}: close failed: {type(exc).__name__}: {exc}")
        return finished

    # -- worker -------------------------------------------------------------------------------

    def _record_failure(self, message: str) -> None:
        # Caller holds self._cond or the counts are only touched by the worker.
        self._counts["failed"] += 1
        self._last_error = message
        self.logger.error(f"action {self.name}: {message}")

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing:
                    self._cond.wait()
                if not self._jobs:
                    return  # closing and drained
                job = self._jobs.popleft()
            self._run(job)

    def _run(self, job: _Job) -> None:
        error = ""
        detail: Any = None
        try:
            detail = self.action.on_event(job.event, job.args)
        except ActionError as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            # Not ActionError: likely a bug in the plugin, so keep where it happened. The
            # traceback is formatted here because ROS loggers take no exc_info.
            self.logger.debug(f"action {self.name}: {traceback.format_exc()}")
        latency = time.monotonic() - job.submitted
        with self._cond:
            self._last_latency = latency
            if error:
                self._record_failure(f"rule {job.rule!r}, event {job.event.id}: {error}")
            else:
                self._counts["fired"] += 1
        if self.on_done is not None:
            result = ActionResult(
                self.name, job.rule, job.event.id, not error, error,
                "" if detail is None else str(detail), latency,
            )  # fmt: skip
            try:
                self.on_done(result)
            except Exception as exc:
                self.logger.error(
                    f"action {self.name}: on_done hook failed: {type(exc).__name__}: {exc}"
                )
