"""Make the README's screenshot from the real page: ``python tests/tracing/screenshot.py
TRACE_FILE... [-o docs/viewer.png]`` builds the viewer of the files (as ``ctxplane view``
does) and saves what headless chromium shows. Without trace files it uses a demo-shaped
trace built with ``tracegen.demo_trace``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from browser import chromium, missing, wait_ready
from tracegen import demo_trace

from ctxplane.tracing.reader import load_traces
from ctxplane.tracing.viewer import write_html


def main() -> int:
    parser = argparse.ArgumentParser(description="screenshot of the viewer")
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/viewer.png"))
    parser.add_argument("--size", default="1280x880", help="window size, WxH")
    parser.add_argument("--click", help="event id to click (its details show)")
    parser.add_argument("--trace", type=int, default=0, help="which trace of the list to show")
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files or [demo_trace().write(Path(tmp) / "demo.jsonl")]
        page = write_html(load_traces(files), Path(tmp) / "view.html")
        with chromium(width, height) as driver:
            driver.get(page.as_uri())
            wait_ready(driver)
            driver.execute_script("ctxplaneViewer.select(arguments[0])", args.trace)
            event = args.click or driver.execute_script(
                "return ctxplaneViewer.criticalEventIds().slice(-3)[0]")
            pos = driver.execute_script("return ctxplaneViewer.eventPosition(arguments[0])", event)
            from selenium.webdriver.common.action_chains import ActionChains

            area = driver.find_element("id", "plot-area")
            ActionChains(driver).move_to_element_with_offset(
                area, round(pos["x"] - area.size["width"] / 2),
                round(pos["y"] - area.size["height"] / 2)).click().perform()
            args.output.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.output))
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
