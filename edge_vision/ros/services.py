"""Service calls that outlast a lost request or reply.

DDS discovery is asynchronous, so ``wait_for_service()`` returning True does not promise an
answer: the server may not yet have matched this client's reply reader (its reply then reaches
nobody), or a server of the same name that just exited is still in the graph and the request
went to it. Either way one request waits out its whole timeout although the service is up. For
requests that are safe to repeat (queries, parameter gets and sets, setting a state), sending
the request again after a short silence turns that into a short delay. Requests that must not
run twice (start a recording, a training run) pass ``resend_after=None``; for them a new client
first gives the server time to match it (:data:`NEW_CLIENT_SETTLE_S`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

# Long enough that a busy server answers the first request; short next to callers' timeouts.
DEFAULT_RESEND_AFTER_S = 2.0

# A server learns of a new client's reply reader a little after the client sees the server, and
# Fast DDS drops a reply it cannot deliver within a short wait ("failed to send response
# (timeout)" in the server's log). A request that is sent only once waits this long after a new
# client first finds its server; clients are kept, so this is paid once per service.
NEW_CLIENT_SETTLE_S = 0.5

# Services whose request may safely arrive twice: a second copy reads or sets the same thing.
REPEATABLE_SERVICES = frozenset(
    {
        "DescribeParameters",
        "GetParameters",
        "GetParameterTypes",
        "ListParameters",
        "SetParameters",
        "SetParametersAtomically",
        "GetDatasetStats",
        "GetSourceInfo",
        "QueryEvents",
        "SetPrompt",
        "SetTags",
    }
)


def default_resend_after(srv_type: type) -> float | None:
    """:data:`DEFAULT_RESEND_AFTER_S` for a :data:`REPEATABLE_SERVICES` type, else None."""
    return DEFAULT_RESEND_AFTER_S if srv_type.__name__ in REPEATABLE_SERVICES else None


def call_with_resend(
    client: Any,
    request: Any,
    timeout: float,
    *,
    resend_after: float | None = DEFAULT_RESEND_AFTER_S,
    spin: Callable[[float], None] | None = None,
) -> Any | None:
    """Call through an rclpy ``client``; the first reply to any copy of ``request`` wins.

    Returns the response, or None when nothing answered within ``timeout`` seconds. ``spin``
    (seconds -> None) processes the node's callbacks when no executor thread does; without it
    the node must be spun elsewhere. A call that failed raises its exception.
    """
    deadline = time.monotonic() + timeout
    pending = [client.call_async(request)]
    next_send = None if resend_after is None else time.monotonic() + resend_after
    try:
        while True:
            for future in pending:
                if future.done():
                    return future.result()
            now = time.monotonic()
            if now >= deadline:
                return None
            if next_send is not None and resend_after is not None and now >= next_send:
                pending.append(client.call_async(request))
                next_send = now + resend_after
            if spin is not None:
                spin(min(0.05, deadline - now))
            else:
                time.sleep(0.01)
    finally:
        for future in pending:
            if not future.done():  # a late reply to it is then dropped, not delivered
                client.remove_pending_request(future)


class ServiceClients:
    """One node's rclpy clients, kept per (service type, name).

    Kept for the life of the node: destroying a client while an executor waits on it is unsafe
    in rclpy, and a kept client is matched by its server once, so only its first one-off request
    waits :data:`NEW_CLIENT_SETTLE_S`.
    """

    def __init__(self, node: Any) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._clients: dict[tuple[type, str], Any] = {}
        self._settled: set[tuple[type, str]] = set()

    def ready(self, srv_type: type, name: str, wait_s: float, *, settle: bool = True) -> Any:
        """The client for ``name`` once a server offers it (waiting up to ``wait_s``), else
        None. With ``settle``, a new client then gives the server time to match it."""
        key = (srv_type, name)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._node.create_client(srv_type, name)
        if not client.service_is_ready() and not client.wait_for_service(timeout_sec=wait_s):
            return None
        if settle and key not in self._settled:
            time.sleep(NEW_CLIENT_SETTLE_S)
            self._settled.add(key)
        return client
