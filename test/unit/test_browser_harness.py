"""edge_vision.testing.browser: real headless Chromium through playwright-core, and the
loopback-only network namespace (other browser tests build on both)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from edge_vision.testing import browser

pytestmark = pytest.mark.slow  # each test starts Chromium (1-2 s)

PAGE = b"""<!doctype html><html><head><title>harness</title></head>
<body style="margin:0;background:#fff"><div id="box" style="width:64px;height:32px;background:#f00">
</div><script>setTimeout(() => { window.ready = 42; console.log('ready now'); }, 200);</script>
</body></html>"""


@pytest.fixture(scope="module", autouse=True)
def _need_browser() -> None:
    reason = browser.browser_unavailable_reason()
    if reason:
        pytest.skip(f"no browser here: {reason}")


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PAGE if self.path == "/" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_eval_in_page_waits_and_evaluates(page_url: str) -> None:
    assert browser.eval_in_page(page_url, "document.title") == "harness"
    # A condition polled in the page, then a function (called, awaited).
    value = browser.eval_in_page(page_url, "async () => window.ready + 1", wait_for="window.ready")
    assert value == 43
    assert browser.eval_in_page(page_url, "1 + 1 // a trailing comment") == 2


def test_run_browser_script_returns_value_and_console(page_url: str) -> None:
    result = browser.run_browser_script(
        "await page.waitForFunction(() => window.ready);"
        "return { title: await page.title(), n: args.n * 2 };",
        url=page_url,
        args={"n": 21},
    )
    assert result["value"] == {"title": "harness", "n": 42}
    assert "log: ready now" in result["console"]
    assert result["page_errors"] == []
    assert result["elapsed_s"] > 0


def test_failures_carry_the_reason_and_the_console(page_url: str) -> None:
    with pytest.raises(browser.BrowserError, match="boom") as caught:
        browser.run_browser_script(
            "await page.waitForFunction(() => window.ready); throw new Error('boom');",
            url=page_url,
        )
    assert "log: ready now" in caught.value.console
    with pytest.raises(browser.BrowserError, match="timed out"):
        browser.eval_in_page(page_url, "1", wait_for="window.never", timeout_s=6)


def test_page_screenshot_of_an_element(page_url: str) -> None:
    png = browser.page_screenshot(page_url, selector="#box")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (32, 64)
    assert tuple(int(v) for v in image[16, 32]) == (0, 0, 255)  # BGR red
    whole = cv2.imdecode(np.frombuffer(browser.page_screenshot(page_url), np.uint8), 1)
    assert whole.shape[:2] == (720, 1280)


def test_fake_camera(page_url: str) -> None:
    settings = browser.run_browser_script(
        "return await page.evaluate(async () => {"
        "  const s = await navigator.mediaDevices.getUserMedia({ video: true });"
        "  const t = s.getVideoTracks()[0]; return { label: t.label, ...t.getSettings() }; });",
        url=page_url,
        fake_camera=True,
    )["value"]
    assert settings["label"] == "fake_device_0" and settings["width"] > 0


def test_loopback_namespace_has_only_lo() -> None:
    reason = browser.loopback_namespace_unavailable_reason()
    if reason:
        pytest.skip(reason)
    done = browser.run_in_loopback_namespace(
        [
            sys.executable,
            "-c",
            "import socket; s = socket.create_server(('127.0.0.1', 0));"
            "socket.create_connection(s.getsockname()).close();"
            "print([n for _, n in socket.if_nameindex()])",
        ],
        timeout_s=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lo']"
    with pytest.raises(subprocess.TimeoutExpired):
        browser.run_in_loopback_namespace(["sleep", "30"], timeout_s=1)
