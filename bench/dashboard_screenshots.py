"""Screenshots of every dashboard page (docs/images/dashboard_*.png) against a real pipeline,
and what a user waits for: page load to first data, live view rate and latency.

    .venv/bin/python bench/dashboard_screenshots.py [--out docs/images] [--train]

Runs vtest.avi -> detector -> tracker -> event_aggregator -> action_trigger (alert) and the
dashboard (edge_vision/dashboard/demo.py), plus an open_vocab_detector with a tiny RANDOMLY
INITIALISED OWL-ViT (no hub weights here: its boxes are meaningless), a dataset node on the
box/cup frames of opencv-doc and a trainer (``--train`` starts a short run for the progress
chart). DDS stays on loopback with a domain of its own.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_vision.testing.ros_harness import (  # noqa: E402
    NodeProcess,
    RosClient,
    isolate_ros_environment,
    wait_until,
)

LIVE = "document.getElementById('live-img')?.naturalWidth > 0"
PAGES = {
    "streams": ("/streams?topic=/cam0/overlay", LIVE),
    "models": ("/models", "document.querySelectorAll('#models-table td').length > 0"),
    "events": ("/events", "document.querySelectorAll('td[data-dash-column=\"id\"]').length > 0"),
    "actions": ("/actions", "document.querySelector('[id*=\"param-status\"]') !== null"),
    "prompts": ("/prompts", "document.querySelector('#prompt-current')?.innerText.length > 0"),
    "training": ("/training", "document.querySelectorAll('#dataset-chart .bars path').length > 0"),
}  # fmt: skip

SHOT_JS = """
const out = {};
for (const [name, [path, ready]] of Object.entries(args.pages)) {
  const t0 = Date.now();
  await page.goto(args.base + path);
  await page.waitForFunction(ready, null, { timeout: 60000, polling: 50 });
  out[name] = { ready_ms: Date.now() - t0 };
  await page.waitForTimeout(name === 'streams' ? 4000 : 1500);  // live stats, a refresh
  if (name === 'streams') out.view = await page.$eval('#view-stats', (e) => e.innerText);
  out[name].png = (await page.screenshot({ fullPage: true })).toString('base64');
}
return out;
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--train", action="store_true", help="start a short training run")
    args = parser.parse_args()
    isolate_ros_environment()

    from edge_vision.dashboard.demo import start_demo_pipeline, stop_all
    from edge_vision.testing.browser import run_browser_script
    from edge_vision.testing.tiny_owl import write_tiny_owl
    from edge_vision.training.footage import build_box_cup_dataset

    work = Path(tempfile.mkdtemp(prefix="ev-dashboard-shots-"))
    build_box_cup_dataset(work / "dataset", step=8)
    owl = write_tiny_owl(work / "tiny_owl")
    demo = start_demo_pipeline(work, namespace="cam0")
    extra = [
        NodeProcess(
            "open_vocab_detector",
            namespace="cam0",
            parameters={
                "model": str(owl),
                "objects": ["a person", "a bicycle"],
                "thresholds": [0.3],
            },
            remappings={
                "image": "image_raw",
                "detections": "ov_detections",
                "overlay": "ov_overlay",
                "labels": "ov_labels",
            },
            log_dir=work,
        ),
        NodeProcess(
            "dataset",
            namespace="cam0",
            parameters={"root": str(work / "dataset")},
            remappings={"image": "image_raw"},
            log_dir=work,
        ),
        NodeProcess(
            "trainer",
            namespace="cam0",
            parameters={
                "dataset": str(work / "dataset"),
                "output_dir": str(work / "out"),
                "width": 64,
                "height": 64,
                "epochs": 2,
                "threads": 1,
            },
            log_dir=work,
        ),
    ]
    ros = RosClient("dashboard_screenshots")
    try:
        from std_srvs.srv import Trigger

        from edge_vision.msg import Alert

        alerts = ros.subscribe(Alert, "/cam0/alerts", qos=10)
        wait_until(lambda: len(alerts.messages) >= 2, 180, "two alerts")
        wait_until(
            lambda: (
                "/cam0/open_vocab_detector/set_prompt"
                in dict(ros.node.get_service_names_and_types())
            ),
            120,
            "open_vocab_detector",
        )
        if args.train:
            wait_until(
                lambda: "/cam0/trainer/start" in dict(ros.node.get_service_names_and_types()),
                60,
                "trainer",
            )
            print("trainer:", ros.call(Trigger, "/cam0/trainer/start", timeout=30).message)
            time.sleep(20)
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        result = run_browser_script(
            SHOT_JS,
            args={"base": demo.url, "pages": PAGES},
            timeout_s=300,
            viewport=(1280, 900),
        )["value"]
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {}
        for name in PAGES:
            (args.out / f"dashboard_{name}.png").write_bytes(base64.b64decode(result[name]["png"]))
            summary[name] = {"ready_ms": result[name]["ready_ms"]}
        summary["live_view"] = result["view"]
        summary["uptime_before"] = load
        summary["uptime_after"] = subprocess.run(
            ["uptime"], capture_output=True, text=True
        ).stdout.strip()
        print(json.dumps(summary, indent=1))
    finally:
        ros.close()
        stop_all(extra + demo.nodes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
