"""call_with_resend: a request whose reply is lost is sent again; one that must not run twice
is not."""

from __future__ import annotations

import threading
import time

import pytest
from rclpy.task import Future

from edge_vision.ros.services import call_with_resend, default_resend_after


class LossyClient:
    """An rclpy-client stand-in whose server answers only from the ``answer_from``-th request
    on (earlier replies are lost, as when the server has not matched our reply reader yet)."""

    def __init__(self, answer_from: int, delay_s: float = 0.0) -> None:
        self.answer_from = answer_from
        self.delay_s = delay_s
        self.sent: list[int] = []
        self.removed: list[Future] = []

    def call_async(self, request: int) -> Future:
        self.sent.append(request)
        future: Future = Future()
        if len(self.sent) >= self.answer_from:
            threading.Timer(
                self.delay_s, future.set_result, args=(f"reply {len(self.sent)}",)
            ).start()
        return future

    def remove_pending_request(self, future: Future) -> None:
        self.removed.append(future)


def test_a_lost_reply_is_recovered_by_sending_again():
    client = LossyClient(answer_from=2)
    start = time.monotonic()
    assert call_with_resend(client, 7, timeout=5.0, resend_after=0.2) == "reply 2"
    assert client.sent == [7, 7]
    assert 0.15 < time.monotonic() - start < 2.0
    assert len(client.removed) == 1  # the unanswered first copy no longer waits for a reply


def test_a_request_that_must_not_repeat_is_sent_once_and_times_out():
    client = LossyClient(answer_from=2)
    start = time.monotonic()
    assert call_with_resend(client, 7, timeout=0.5, resend_after=None) is None
    assert client.sent == [7]
    assert time.monotonic() - start == pytest.approx(0.5, abs=0.3)


def test_a_slow_reply_to_the_first_copy_still_wins():
    client = LossyClient(answer_from=1, delay_s=0.5)
    assert call_with_resend(client, 7, timeout=5.0, resend_after=0.2) == "reply 1"
    assert len(client.sent) >= 2


def test_spin_is_called_while_waiting_when_given():
    client = LossyClient(answer_from=1, delay_s=0.2)
    spins: list[float] = []

    def spin(seconds: float) -> None:
        spins.append(seconds)
        time.sleep(seconds)

    assert call_with_resend(client, 1, timeout=2.0, spin=spin) == "reply 1"
    assert spins and all(0 < s <= 0.05 for s in spins)


def test_only_queries_and_settings_are_resent_by_default():
    from rcl_interfaces.srv import GetParameters, SetParameters
    from std_srvs.srv import Trigger

    from edge_vision.srv import GetSourceInfo, LoadModel, QueryEvents, Record, SetPrompt

    for repeatable in (GetParameters, SetParameters, GetSourceInfo, QueryEvents, SetPrompt):
        assert default_resend_after(repeatable) is not None, repeatable
    for once in (Record, LoadModel, Trigger):
        assert default_resend_after(once) is None, once
