"""Keeping aiortc's ICE on chosen local addresses (loopback in tests and by default).

aioice, under aiortc, offers a host candidate on every non-loopback interface address and
never on 127.0.0.1, and has no option to choose. ``aioice.ice.get_host_addresses`` (looked up
at call time by ``Connection.gather_candidates``) is therefore wrapped once per process so that
it returns the addresses held in a ``ContextVar``: :func:`ice_host_candidates` sets them only
around the code that gathers candidates (``setLocalDescription``), so other aiortc users in
the process keep aioice's default. Used by the WebRTC source and the WebRTC output.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator, Sequence

__all__ = ["ice_host_candidates", "install_ice_hook", "strip_mdns_candidates"]

_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "edge_vision_ice_host_addresses", default=None
)
_hook_lock = threading.Lock()
_hook_installed = False


def install_ice_hook() -> None:
    """Wrap ``aioice.ice.get_host_addresses`` (once per process; later calls do nothing).

    Outside an :func:`ice_host_candidates` block the wrapper calls whatever was there before.
    """
    global _hook_installed
    import aioice.ice

    with _hook_lock:
        if _hook_installed:
            return
        previous = aioice.ice.get_host_addresses

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            chosen = _ADDRESSES.get()
            if chosen is None:
                return previous(use_ipv4, use_ipv6)
            return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

        aioice.ice.get_host_addresses = get_host_addresses
        _hook_installed = True


@contextlib.contextmanager
def ice_host_candidates(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this block (this task and those it starts), aiortc peer connections gather ICE
    host candidates on exactly ``addresses`` (e.g. ``("127.0.0.1",)``); None: aioice default.
    """
    install_ice_hook()
    token = _ADDRESSES.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _ADDRESSES.reset(token)


def strip_mdns_candidates(sdp: str) -> str:
    """``sdp`` without ``a=candidate`` lines whose address is an mDNS name (``*.local``):
    resolving one would send multicast queries out of the machine's interfaces."""
    kept = []
    for line in sdp.splitlines():
        parts = line.split()
        if (
            line.startswith("a=candidate:")
            and len(parts) > 4
            and parts[4].lower().endswith(".local")
        ):
            continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"
