"""Streams page (``/streams``, also ``/``): the video sources in the graph (state, uri, fps,
errors), adding a video_source + detector pipeline through the launcher (and stopping it), the
browser camera, and the live view of an image topic (``/video/<topic>.mjpg``) with its fps and
latency; ``?topic=`` opens a topic directly."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import dash
from dash import ALL, Input, Output, State, ctx, dcc, html
from flask import Response, abort

from edge_vision.dashboard import streams as stream_control
from edge_vision.dashboard.pages.common import PageContext, not_running, status_text
from edge_vision.dashboard.ros_bridge import BridgeError


def register(app: dash.Dash, context: PageContext) -> Callable[..., Any]:
    """The streams page's callbacks and the ``/video/<topic>.mjpg`` route; returns its layout
    function, which takes the page's query (``topic``) as keywords."""
    bridge, config = context.bridge, context.config

    def streams_page(topic: str | None = None, **_other: str) -> Any:
        """``?topic=/cam0/overlay`` opens the live view of that topic (a link to share)."""
        from edge_vision.models.zoo import list_models

        detectors = [m.name for m in list_models() if m.task == "detection"]
        topics = bridge.image_topics()
        overlay = [t for t in topics if t.endswith("/overlay")]
        if topic and topic not in topics:
            topics.append(topic)  # not published yet (a stream starting): shown once it is
        return html.Div(
            [
                html.Div(
                    [
                        html.H2("Streams"),
                        html.Div(id="streams-list"),
                        dcc.Interval(id="streams-tick", interval=2000),
                    ],
                    className="card",
                ),
                html.Div(
                    [
                        html.H3("Add a stream (video_source + detector)"),
                        html.Div(
                            [
                                dcc.Input(id="stream-name", placeholder="name (namespace)"),
                                dcc.Input(
                                    id="stream-uri",
                                    placeholder="uri: file, rtsp://, /dev/video0, webrtc://",
                                    size="60",
                                ),
                                html.Button("browser camera", id="stream-webcam"),
                                dcc.Dropdown(
                                    id="stream-model",
                                    options=detectors,
                                    value=detectors[0] if detectors else None,
                                    style={"width": "180px"},
                                ),
                                html.Label("fps cap"),
                                dcc.Input(id="stream-fps", type="number", value=0, min=0, size="5"),
                                html.Button("Add stream", id="stream-add"),
                            ],
                            className="row",
                        ),
                        html.Div(id="stream-add-status"),
                    ],
                    className="card",
                ),
                html.Div(
                    [
                        html.H3("Live view"),
                        dcc.Dropdown(
                            id="view-topic",
                            options=topics,
                            value=topic or (overlay or topics or [None])[0],
                            style={"width": "420px"},
                        ),
                        html.Div(id="view-stats", className="muted"),
                        html.Div(id="view", className="live"),
                        dcc.Interval(id="view-tick", interval=1000),
                    ],
                    className="card",
                ),
            ]
        )

    @app.callback(
        Output("stream-add-status", "children", allow_duplicate=True),
        Input({"type": "stop-stream", "name": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def stop(clicks: list[Any]) -> Any:
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks or []):
            return dash.no_update  # buttons rendered, none clicked
        stopped = stream_control.stop_stream(config.streams_dir, trigger["name"])
        return status_text(stopped, f"stopped {trigger['name']}" if stopped else "not found")

    @app.callback(Output("streams-list", "children"), Input("streams-tick", "n_intervals"))
    def streams_list(_n: int | None) -> Any:
        from edge_vision.srv import GetSourceInfo

        launched = {s.name: s for s in stream_control.launched_streams(config.streams_dir)}
        rows = []
        sources = bridge.sources()
        for node in sources:
            try:
                info = bridge.call(GetSourceInfo, f"{node}/get_info", timeout=2.0)
                state = f"{info.state} {info.width}x{info.height} {info.measured_fps:.1f} fps"
                uri, err = info.uri, info.last_error
            except BridgeError as exc:
                state, uri, err = "no answer", "", str(exc)
            ns = node.rsplit("/", 1)[0].strip("/")
            stop = (
                html.Button("stop", id={"type": "stop-stream", "name": ns})
                if ns in launched
                else ""
            )
            rows.append(
                html.Tr([html.Td(node), html.Td(uri), html.Td(state), html.Td(err), html.Td(stop)])
            )
        for name, s in launched.items():
            if not any(r.split("/")[1:2] == [name] for r in sources):
                state = "starting" if s.alive else "exited (see its log)"
                stop = html.Button("stop", id={"type": "stop-stream", "name": name})
                rows.append(
                    html.Tr(
                        [
                            html.Td(f"/{name}"),
                            html.Td(s.uri),
                            html.Td(state),
                            html.Td(),
                            html.Td(stop),
                        ]
                    )
                )
        header = html.Tr([html.Th(h) for h in ("source", "uri", "state", "error", "")])
        return html.Table([header, *rows]) if rows else not_running("video_source")

    @app.callback(
        Output("stream-uri", "value"),
        Output("stream-add-status", "children", allow_duplicate=True),
        Input("stream-webcam", "n_clicks"),
        prevent_initial_call=True,
    )
    def webcam(_n: int) -> Any:
        if not _n:
            return dash.no_update, dash.no_update
        port = _free_port()
        link = f"http://127.0.0.1:{port}/"
        return f"webrtc://127.0.0.1:{port}", html.Span(
            [
                "after adding, open ",
                html.A(link, href=link, target="_blank"),
                " in the browser whose camera to send",
            ]
        )

    @app.callback(
        Output("stream-add-status", "children"),
        Input("stream-add", "n_clicks"),
        State("stream-name", "value"),
        State("stream-uri", "value"),
        State("stream-model", "value"),
        State("stream-fps", "value"),
        prevent_initial_call=True,
    )
    def add_stream(_n: int, name: Any, uri: Any, model: Any, fps: Any) -> Any:
        if not _n:
            return dash.no_update
        try:
            s = stream_control.start_stream(
                config.streams_dir, str(name or ""), str(uri or ""), str(model or ""),
                float(fps or 0),
            )  # fmt: skip
        except stream_control.StreamError as exc:
            return status_text(False, str(exc))
        return status_text(True, f"started /{s.name} (launcher pid {s.pid}, pipeline {s.pipeline})")

    @app.callback(Output("view", "children"), Input("view-topic", "value"))
    def view(topic: str | None) -> Any:
        if not topic:
            return not_running("image topic")
        return html.Img(id="live-img", src=f"/video{topic}.mjpg", alt=topic)

    @app.callback(
        Output("view-topic", "options"),
        Output("view-stats", "children"),
        Input("view-tick", "n_intervals"),
        State("view-topic", "value"),
    )
    def view_stats(_n: int | None, topic: str | None) -> Any:
        stats = bridge.view_stats(topic) if topic else None
        text = ""
        if stats:
            latency = stats["latency_ms"]
            text = (
                f"{stats['topic']}: {stats['fps']} fps, latency "
                f"{'-' if latency is None else f'{latency} ms'} median "
                f"(max {stats['latency_max_ms']} ms), {stats['size'] or 'no frame yet'}, "
                f"{stats['frames']} frames"
            )
        return bridge.image_topics(), text

    @app.server.route("/video/<path:topic>.mjpg")
    def mjpeg(topic: str) -> Response:
        topic = "/" + topic
        error = bridge.check_image_topic(topic)
        if error:
            abort(404, error)
        view = bridge.view(topic)
        return Response(
            _mjpeg_frames(view, config.max_view_fps),
            mimetype="multipart/x-mixed-replace; boundary=frame",
            headers={"Cache-Control": "no-store"},
        )

    return streams_page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mjpeg_frames(view: Any, max_fps: float) -> Iterator[bytes]:
    from edge_vision.outputs.frame_hub import Pacer
    from edge_vision.outputs.mjpeg import encode_jpeg

    hub = view.hub
    hub.acquire("dashboard")
    pacer = Pacer(max_fps)
    seq = 0
    try:
        while True:
            delay = pacer.delay()
            if delay:
                time.sleep(delay)
            frame = hub.wait_newer(seq, timeout=5.0)
            view.last_used = time.monotonic()
            if frame is None:
                continue  # the topic is quiet; the browser keeps the last picture
            seq = frame.seq
            data = encode_jpeg(frame.image, 80)
            pacer.sent()
            yield (
                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                + str(len(data)).encode()
                + b"\r\n\r\n"
                + data
                + b"\r\n"
            )
    finally:
        hub.release("dashboard")
