"""Drive a real headless Chromium from tests, and run whole scenarios in a loopback-only network.

Chromium is the system one (Debian ``chromium``, ``/usr/bin/chromium``) driven by
``playwright-core`` from npm (``package.json`` at the repository root, installed into
``node_modules/`` by ``scripts/setup_venv.sh``); no browser is downloaded. Each call starts a
small node script that launches Chromium with a fresh profile, runs a piece of JavaScript
against a page and prints a JSON result, which comes back to Python as a dict.

API (stable; other tests build on it):

- :func:`browser_unavailable_reason` -- None, or why browser tests must be skipped (no
  Chromium, no ``node``, ``playwright-core`` not installed; with ``namespace=True`` also no
  loopback-only network namespace).
- :func:`run_browser_script` -- run ``js``, the body of
  ``async (page, args, context) => {...}``, after opening ``url``; returns
  ``{"value": <what js returned>, "console": [...], "page_errors": [...], "elapsed_s": ...}``.
- :func:`eval_in_page` -- open ``url``, optionally wait for a condition, return the value of a
  JavaScript expression (or zero-argument function) evaluated in the page.
- :func:`page_screenshot` -- open ``url`` and return a PNG of the page (or of one element).
- :data:`WEBRTC_VIEWER_JS` -- ``playing`` and ``viewerStats(page)`` for scripts that drive the
  WebRTC viewer page.
- :func:`run_in_loopback_namespace` / :func:`loopback_namespace_command` -- run a command
  (typically ``python -m some.scenario``) in a new network namespace whose only interface is
  ``lo`` (up, 127.0.0.1 and ::1).

Why a loopback-only namespace: WebRTC's ICE enumerates every network interface of the
machine and offers an address on each as a candidate; Chromium also tries its configured
STUN servers and mDNS. Even with no STUN server and the Python side restricted to 127.0.0.1,
that means UDP probes towards the machine's real interfaces. Inside a namespace whose only
interface is loopback there is nothing else to enumerate or route to, so a test that runs the
server, the ROS node and Chromium together in it guarantees that nothing leaves the machine
(FastDDS discovery included). ``unshare -n`` creates the namespace (as root; otherwise
``unshare -rn``, which adds a user namespace mapping the caller to root, works where the
kernel allows unprivileged user namespaces); ``lo`` starts down in a new namespace and is
brought up with an ioctl from Python before the command is exec'd, so ``ip`` (iproute2) is
not needed. Processes inside share the filesystem (``/dev/shm`` too) with the host; only the
network is private.

Chromium flags (measured on the build machines, see ../shared/PLATFORM.md "Browser tests"):
``--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
--disable-background-networking --disable-component-update --disable-sync`` and a fresh
``--user-data-dir`` (a temporary directory, removed afterwards). ``fake_camera=True`` adds
``--use-fake-device-for-media-stream --use-fake-ui-for-media-stream
--allow-loopback-in-peer-connection``: ``getUserMedia`` then succeeds without a prompt and
yields Chromium's synthetic moving test picture, and WebRTC may use 127.0.0.1 candidates.

Environment overrides: ``EDGE_VISION_CHROMIUM`` (the browser executable),
``EDGE_VISION_NODE_MODULES`` (the folder that holds ``playwright-core``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_FLAGS",
    "FAKE_CAMERA_FLAGS",
    "BrowserError",
    "BrowserUnavailable",
    "browser_unavailable_reason",
    "chromium_path",
    "eval_in_page",
    "loopback_namespace_command",
    "loopback_namespace_unavailable_reason",
    "node_modules_dir",
    "page_screenshot",
    "run_browser_script",
    "run_in_loopback_namespace",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

BASE_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
FAKE_CAMERA_FLAGS: tuple[str, ...] = (
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
)

_RESULT_MARK = "@@EDGE_VISION_BROWSER_RESULT@@ "


class BrowserUnavailable(RuntimeError):
    """Chromium, node or playwright-core is missing (the message says which)."""


class BrowserError(RuntimeError):
    """The browser script failed or timed out; the message carries the page's console."""

    def __init__(self, message: str, *, console: Sequence[str] = (), stderr: str = "") -> None:
        super().__init__(message)
        self.console = list(console)
        self.stderr = stderr


# -- discovery ---------------------------------------------------------------------------------


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when there is none."""
    configured = os.environ.get("EDGE_VISION_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def node_modules_dir() -> Path:
    """The ``node_modules`` folder expected to hold ``playwright-core``."""
    configured = os.environ.get("EDGE_VISION_NODE_MODULES")
    return Path(configured) if configured else REPO_ROOT / "node_modules"


def browser_unavailable_reason(*, namespace: bool = False) -> str | None:
    """None if browser tests can run here, else a reason fit for ``pytest.skip``.

    ``namespace=True`` also requires :func:`run_in_loopback_namespace` to work.
    """
    if chromium_path() is None:
        return "no Chromium (install the Debian package 'chromium', scripts/apt-packages.txt)"
    node_major = _node_major_version()
    if node_major is None:
        return "no working 'node' on PATH (Node.js 20+ drives Chromium through playwright-core)"
    if node_major < 20:
        return f"Node.js {node_major} is too old for playwright-core (package.json); need 20+"
    playwright = node_modules_dir() / "playwright-core" / "package.json"
    if not playwright.is_file():
        return (
            f"playwright-core is not installed ({playwright.parent} missing); "
            "run scripts/setup_venv.sh or `npm ci` at the repository root"
        )
    if namespace:
        return loopback_namespace_unavailable_reason()
    return None


@functools.cache
def _node_major_version() -> int | None:
    if shutil.which("node") is None:
        return None
    try:
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=20)
        return int(done.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


# -- loopback-only network namespace -----------------------------------------------------------

# Runs inside the new namespace: bring lo up (it starts down), then become the command.
_LO_UP_AND_EXEC = """\
import fcntl, os, socket, struct, sys
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
os.execvp(sys.argv[1], sys.argv[1:])
"""


def loopback_namespace_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` in a fresh network namespace with only ``lo`` up."""
    unshare = shutil.which("unshare") or "unshare"
    flags = ["--net"] if os.geteuid() == 0 else ["--map-root-user", "--net"]
    return [unshare, *flags, "--", sys.executable, "-c", _LO_UP_AND_EXEC, *argv]


_NAMESPACE_PROBE = """\
import socket
names = [name for _, name in socket.if_nameindex()]
server = socket.create_server(("127.0.0.1", 0))
socket.create_connection(server.getsockname(), timeout=2).close()
print(",".join(names))
"""


@functools.cache
def loopback_namespace_unavailable_reason() -> str | None:
    """None if :func:`run_in_loopback_namespace` works here (measured once), else why not."""
    if shutil.which("unshare") is None:
        return "no 'unshare' (util-linux) to create a loopback-only network namespace"
    try:
        done = subprocess.run(
            loopback_namespace_command([sys.executable, "-c", _NAMESPACE_PROBE]),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"cannot create a loopback-only network namespace ({detail})"
    if done.stdout.strip() != "lo":
        return f"the new network namespace has interfaces {done.stdout.strip()!r}, not only lo"
    return None


def run_in_loopback_namespace(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion in a loopback-only network namespace; output captured (text).

    ``env`` replaces the environment (default: this process's). On timeout the whole process
    group is killed and ``subprocess.TimeoutExpired`` is raised with the output so far.
    Raises ``BrowserUnavailable`` where no namespace can be created.
    """
    reason = loopback_namespace_unavailable_reason()
    if reason:
        raise BrowserUnavailable(reason)
    return _run_group(
        loopback_namespace_command(argv),
        env=dict(os.environ if env is None else env),
        timeout_s=timeout_s,
        cwd=cwd,
    )


def _run_group(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    cwd: str | os.PathLike[str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new session, killing the whole group (Chromium's children
    included) on timeout."""
    process = subprocess.Popen(
        list(command),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate()
        raise subprocess.TimeoutExpired(process.args, timeout_s, output=out, stderr=err) from None
    except BaseException:
        _kill_group(process)
        process.wait()
        raise
    # The command is done; anything it left behind in its group goes too.
    _kill_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# -- helpers for scripts against the WebRTC viewer page -------------------------------------------

# Prepend to a run_browser_script body that drives edge_vision's WebRTC viewer page
# (outputs/static): ``playing`` is a waitForFunction predicate (the video shows frames), and
# ``await viewerStats(page)`` returns the video's size and time, the page's connection state,
# the inbound video codec, frames decoded and decoder, and the nominated candidate pair
# (``local``/``remote``: ``{address, type, protocol}``).
WEBRTC_VIEWER_JS = r"""
const playing = () => {
  const v = document.getElementById('video');
  return v.videoWidth > 0 && v.currentTime > 0.5;
};
async function viewerStats(p) {
  return await p.evaluate(async () => {
    const v = document.getElementById('video');
    const out = { videoWidth: v.videoWidth, videoHeight: v.videoHeight,
                  currentTime: v.currentTime, state: window.edgeVision.state };
    const stats = await window.edgeVision.pc.getStats();
    const byId = {};
    stats.forEach((s) => { byId[s.id] = s; });
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.codec = s.codecId && byId[s.codecId] ? byId[s.codecId].mimeType : null;
        out.framesDecoded = s.framesDecoded;
        out.decoder = s.decoderImplementation;
      }
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        const l = byId[s.localCandidateId], r = byId[s.remoteCandidateId];
        out.local = l && { address: l.address, type: l.candidateType, protocol: l.protocol };
        out.remote = r && { address: r.address, type: r.candidateType, protocol: r.protocol };
      }
    });
    return out;
  });
}
"""


# -- the node runner ---------------------------------------------------------------------------

_RUNNER_JS = r"""
'use strict';
const fs = require('fs');
const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(spec.playwright);
const MARK = spec.mark;
const consoleLines = [];
const pageErrors = [];
function emit(obj) { process.stdout.write('\n' + MARK + JSON.stringify(obj) + '\n'); }
function watch(page) {
  page.on('console', (m) => {
    if (consoleLines.length < 500) consoleLines.push(m.type() + ': ' + m.text());
  });
  page.on('pageerror', (e) => {
    if (pageErrors.length < 100) pageErrors.push(String((e && e.stack) || e));
  });
}
const started = Date.now();
// The overall deadline: report (with the console so far) and exit rather than be killed.
setTimeout(() => {
  emit({ ok: false, error: 'timed out after ' + spec.deadlineMs / 1000 + ' s',
         console: consoleLines, page_errors: pageErrors,
         elapsed_s: (Date.now() - started) / 1000 });
  process.exit(1);
}, spec.deadlineMs).unref();
(async () => {
  let context;
  try {
    context = await chromium.launchPersistentContext(spec.userDataDir, {
      executablePath: spec.executable,
      headless: true,
      args: spec.flags,
      viewport: spec.viewport,
      timeout: spec.timeoutMs,
    });
    context.setDefaultTimeout(spec.timeoutMs);
    context.on('page', watch);
    const page = context.pages()[0] || await context.newPage();
    watch(page);
    if (spec.url) await page.goto(spec.url, { waitUntil: spec.waitUntil });
    const fn = new (Object.getPrototypeOf(async function () {}).constructor)(
      'page', 'args', 'context', spec.script);
    const value = await fn(page, spec.args, context);
    emit({ ok: true, value: value === undefined ? null : value, console: consoleLines,
           page_errors: pageErrors, elapsed_s: (Date.now() - started) / 1000 });
  } catch (e) {
    emit({ ok: false, error: String(e && e.stack || e), console: consoleLines,
           page_errors: pageErrors, elapsed_s: (Date.now() - started) / 1000 });
    process.exitCode = 1;
  } finally {
    if (context) await context.close().catch(() => {});
  }
})();
"""


def run_browser_script(
    js: str,
    *,
    url: str | None = None,
    timeout_s: float = 30.0,
    args: Mapping[str, Any] | None = None,
    fake_camera: bool = False,
    extra_flags: Sequence[str] = (),
    wait_until: str = "load",
    viewport: tuple[int, int] = (1280, 720),
) -> dict[str, Any]:
    """Launch headless Chromium, open ``url`` (if given) and run ``js`` in node.

    ``js`` is the body of ``async (page, args, context) => { ... }`` with playwright's
    ``page`` and ``BrowserContext`` and ``args`` (JSON-serialisable, passed through as is); its
    return value must be JSON-serialisable. Example::

        run_browser_script("return await page.title();", url="http://127.0.0.1:8080/")

    Returns ``{"value", "console", "page_errors", "elapsed_s"}``: the return value, the page's
    console lines (``"log: text"``), uncaught page errors, and seconds from launch to the end.
    Raises ``BrowserUnavailable`` (nothing to run), ``BrowserError`` (the script threw, e.g. a
    ``waitForFunction`` timed out; message includes the console) or ``BrowserError`` on the
    overall ``timeout_s`` (Chromium and node are killed).

    A little before ``timeout_s`` the runner gives up by itself and reports the page console
    so far (``BrowserError``); Chromium and node are killed at ``timeout_s`` in any case.
    ``wait_until`` is playwright's ``goto`` condition (``load``, ``domcontentloaded``,
    ``networkidle``, ``commit``). ``extra_flags`` are added to the Chromium command line.
    """
    reason = browser_unavailable_reason()
    if reason:
        raise BrowserUnavailable(reason)
    flags = [*BASE_FLAGS, *(FAKE_CAMERA_FLAGS if fake_camera else ()), *extra_flags]
    # node reports its own timeout (with the page console) a little before we kill it.
    deadline_ms = int(max(1.0, timeout_s - min(3.0, 0.15 * timeout_s)) * 1000)
    with tempfile.TemporaryDirectory(prefix="ev-browser-", ignore_cleanup_errors=True) as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "runner.js").write_text(_RUNNER_JS)
        spec = {
            "playwright": str(node_modules_dir() / "playwright-core"),
            "executable": chromium_path(),
            "flags": flags,
            "userDataDir": str(tmp_path / "profile"),
            "url": url,
            "waitUntil": wait_until,
            "script": js,
            "args": dict(args or {}),
            "timeoutMs": deadline_ms,
            "deadlineMs": deadline_ms,
            "viewport": {"width": viewport[0], "height": viewport[1]},
            "mark": _RESULT_MARK,
        }
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "NODE_PATH": str(node_modules_dir())}
        started = time.monotonic()
        try:
            done = _run_group(
                ["node", str(tmp_path / "runner.js"), str(tmp_path / "spec.json")],
                env=env,
                timeout_s=timeout_s,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrowserError(
                f"browser script did not finish in {timeout_s:g} s (killed)",
                stderr=_text(exc.stderr),
            ) from None
    result = _parse_result(done.stdout)
    if result is None:
        raise BrowserError(
            f"browser runner exited with code {done.returncode} after "
            f"{time.monotonic() - started:.1f} s without a result; stderr:\n" + _tail(done.stderr),
            stderr=done.stderr,
        )
    if not result.get("ok"):
        console = result.get("console", [])
        raise BrowserError(
            f"browser script failed: {result.get('error')}"
            + (f"\npage console:\n{_tail(chr(10).join(console))}" if console else "")
            + (f"\npage errors: {result.get('page_errors')}" if result.get("page_errors") else ""),
            console=console,
            stderr=done.stderr,
        )
    return {
        "value": result.get("value"),
        "console": result.get("console", []),
        "page_errors": result.get("page_errors", []),
        "elapsed_s": result.get("elapsed_s"),
    }


def _wait_js(wait_for: str | None, wait_for_selector: str | None) -> str:
    lines = []
    if wait_for_selector:
        lines.append("await page.waitForSelector(args.waitForSelector);")
    if wait_for:
        lines.append("await page.waitForFunction(args.waitFor, null, { polling: 100 });")
    return "\n".join(lines)


def eval_in_page(
    url: str,
    expression: str,
    *,
    wait_for: str | None = None,
    wait_for_selector: str | None = None,
    timeout_s: float = 30.0,
    fake_camera: bool = False,
) -> Any:
    """Open ``url`` and return the (JSON) value of ``expression`` evaluated in the page.

    ``expression`` is a JavaScript expression, or a function (``"() => ..."``, may be async)
    that is called. ``wait_for``: a JavaScript expression polled in the page until truthy
    before evaluating (e.g. ``"document.querySelector('img')?.naturalWidth > 0"``);
    ``wait_for_selector``: a CSS selector to wait for.
    """
    js = _wait_js(wait_for, wait_for_selector) + (
        # A string is evaluated as an expression by playwright; call it if it is a function.
        "\nreturn await page.evaluate("
        "'(async () => { const v = (' + args.expression + '\\n); "
        'return typeof v === "function" ? await v() : await v; })()\');'
    )
    return run_browser_script(
        js,
        url=url,
        timeout_s=timeout_s,
        fake_camera=fake_camera,
        args={"expression": expression, "waitFor": wait_for, "waitForSelector": wait_for_selector},
    )["value"]


def page_screenshot(
    url: str,
    *,
    selector: str | None = None,
    wait_for: str | None = None,
    wait_for_selector: str | None = None,
    full_page: bool = False,
    viewport: tuple[int, int] = (1280, 720),
    timeout_s: float = 30.0,
) -> bytes:
    """Open ``url`` and return a PNG screenshot of the page, or of the element ``selector``.

    ``wait_for`` / ``wait_for_selector`` as in :func:`eval_in_page`.
    """
    js = _wait_js(wait_for, wait_for_selector) + (
        "\nconst target = args.selector ? page.locator(args.selector).first() : page;"
        "\nconst png = await target.screenshot(args.selector ? {} : { fullPage: args.fullPage });"
        "\nreturn png.toString('base64');"
    )
    value = run_browser_script(
        js,
        url=url,
        timeout_s=timeout_s,
        viewport=viewport,
        args={
            "selector": selector,
            "waitFor": wait_for,
            "waitForSelector": wait_for_selector,
            "fullPage": full_page,
        },
    )["value"]
    return base64.b64decode(value)


# -- helpers -----------------------------------------------------------------------------------


def _parse_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            try:
                return json.loads(line[len(_RESULT_MARK) :])
            except json.JSONDecodeError:
                return None
    return None


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
