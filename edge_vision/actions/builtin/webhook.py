"""The ``webhook`` action."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge_vision.actions.base import ActionContext, ActionError, EventFilter, prop
from edge_vision.events.model import Event

if TYPE_CHECKING:
    import requests

__all__ = ["WebhookAction", "parse_headers"]


def parse_headers(lines: list[str]) -> dict[str, str]:
    """``["Name: value", ...]`` as a dict; ValueError naming a malformed line."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise ValueError(f"header {line!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


class WebhookAction(EventFilter):
    """POST the event as JSON to a URL, retrying on connection errors, timeouts and HTTP 5xx.

    The body is ``{"action": <instance name>, "event": Event.to_dict()}``. A 4xx answer is
    not retried (the request itself is wrong). Attempts are ``1 + retries``, ``backoff_s``
    apart, doubling each time.
    """

    type_name = "webhook"

    url: str = prop("", "URL to POST the event JSON to.")
    timeout_s: float = prop(5.0, "Timeout per attempt (connect and read), seconds.", min=0.01,
                            max=300.0)  # fmt: skip
    retries: int = prop(3, "Retries after the first attempt.", min=0, max=20)
    backoff_s: float = prop(0.5, "Wait before the first retry; doubles per retry.", min=0.0,
                            max=60.0)  # fmt: skip
    headers: list[str] = prop([], "Extra HTTP headers as 'Name: value' strings.")

    def __init__(self, name: str, context: ActionContext) -> None:
        super().__init__(name, context)
        self._session: requests.Session | None = None
        self._closed = threading.Event()  # wakes a backoff sleep at close

    def validate_property(self, name: str, value: Any) -> None:
        if name == "headers":
            parse_headers(value)
        elif name == "url" and value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")

    def on_event(self, event: Event, args: Mapping[str, Any]) -> str:
        import requests  # lazily: registering the built-ins must not need it

        url = self.setting("url", args)
        if not url:
            raise ActionError(f"webhook {self.name}: url is not set")
        timeout = self.setting("timeout_s", args)
        retries = self.setting("retries", args)
        delay = self.setting("backoff_s", args)
        headers = parse_headers(self.setting("headers", args))
        payload = {"action": self.name, "event": event.to_dict()}
        if self._session is None:
            self._session = requests.Session()
        last = ""
        for attempt in range(retries + 1):
            if attempt:
                if self._closed.wait(delay):
                    raise ActionError(f"webhook {self.name}: closed while retrying ({last})")
                delay *= 2
            try:
                response = self._session.post(url, json=payload, headers=headers, timeout=timeout)
            except requests.Timeout:
                last = f"timed out after {timeout} s"
                continue
            except requests.ConnectionError as exc:
                last = f"connection failed: {exc}"
                continue
            except requests.RequestException as exc:  # bad URL and the like: retrying is futile
                raise ActionError(f"webhook {self.name}: {type(exc).__name__}: {exc}") from exc
            with response:
                status = response.status_code
            if status >= 500:
                last = f"HTTP {status} from {url}"
                continue
            if status >= 400:
                raise ActionError(f"webhook {self.name}: HTTP {status} from {url} (not retried)")
            return f"HTTP {status}"
        raise ActionError(f"webhook {self.name}: gave up after {attempt + 1} attempt(s): {last}")

    def close(self) -> None:
        self._closed.set()
        if self._session is not None:
            self._session.close()
            self._session = None
