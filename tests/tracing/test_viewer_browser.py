"""The viewer in a real headless chromium: lanes, edges, critical path, details on click.

Needs Debian's chromium and chromium-driver (``.ci/run`` installs them). Without them the
test fails in CI (``CI`` set) and is skipped elsewhere, saying why. The screenshot goes to
``$CTXPLANE_TEST_ARTIFACTS`` (or the test's tmp_path).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, missing, wait_ready
from tracegen import TraceBuilder, fan_out_trace, rpc_trace, write_traces

from ctxplane.tracing import critical_path, load_traces
from ctxplane.tracing.viewer import write_html

CRITICAL_RGB = (0xE0, 0x24, 0x5E)


@pytest.fixture
def driver() -> Any:
    reason = missing()
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    with chromium() as d:
        yield d


def _artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("CTXPLANE_TEST_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _hostile() -> TraceBuilder:
    b = TraceBuilder(seed=5)
    eu = b.eu("<img src=x onerror=\"document.title='pwned'\">", kind="main")
    eu.event("start", 0, "</script><script>document.title='pwned'</script>")
    eu.event("end", 1)
    return b


_HOSTILE = _hostile()


def _pick(d: Any, trace_id: str) -> None:
    """Click the trace's entry in the list of traces."""
    d.find_element("css selector", f'.trace-item[data-trace="{trace_id}"]').click()


def _has_colour(pixels: list[int], rgb: tuple[int, int, int], tolerance: int = 40) -> bool:
    return any(
        all(abs(pixels[i + c] - rgb[c]) <= tolerance for c in range(3))
        for i in range(0, len(pixels), 4)
    )


def _canvas_pixels(d: Any, x: float, y: float, r: int = 6) -> list[int]:
    """RGBA pixels of the plot canvas in a square of side 2r around (x, y) (CSS pixels)."""
    pixels: list[int] = d.execute_script(
        """const c = document.getElementById('plot'), k = c.width / c.clientWidth;
        const [x, y, r] = arguments;
        return Array.from(c.getContext('2d').getImageData(
            Math.round((x - r) * k), Math.round((y - r) * k),
            Math.round(2 * r * k), Math.round(2 * r * k)).data);""",
        x, y, r,
    )
    return pixels


def _click(d: Any, x: float, y: float) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    area = d.find_element(By.ID, "plot-area")
    size = area.size
    ActionChains(d).move_to_element_with_offset(
        area, round(x - size["width"] / 2), round(y - size["height"] / 2)
    ).click().perform()


def test_viewer_in_chromium(tmp_path: Path, driver: Any) -> None:
    d = driver
    fan, ids = fan_out_trace((3_600_000.0, -1_800_000.0, 2_000.0))
    rpc, rpc_ids = rpc_trace()
    path = write_traces(tmp_path / "traces.jsonl", [fan, rpc, _HOSTILE])
    traces = {t.id: t for t in load_traces(path)}
    page = write_html(traces.values(), tmp_path / "traces.html")
    d.get(page.as_uri())
    wait_ready(d)

    # the list of traces; the first is drawn
    assert d.execute_script("return ctxplaneViewer.traces()") == list(traces)
    trace = traces[fan.trace_id]
    lanes = d.execute_script(
        "return Array.from(document.querySelectorAll('.lane-label')).map(e => e.dataset.eu)")
    assert sorted(lanes) == sorted(trace.eus)  # one lane per EU
    groups = d.execute_script(
        "return Array.from(document.querySelectorAll('.group-label')).map(e => e.dataset.service)")
    assert groups == ["api", "db-0", "db-1", "db-2"]  # lanes grouped by service and process

    # edges: every cross-EU edge drawn, with its kind
    drawn = d.execute_script(
        """return Array.from(document.querySelectorAll('#edge-layer path.edge')).map(
            p => [p.dataset.src, p.dataset.dst, p.classList[1],
                  p.classList.contains('critical')])""")
    expected = {(e.src.id, e.dst.id): e.kind for e in trace.edges if e.kind != "sequence"}
    cross = {(s, t): k for s, t, k, _ in drawn if k != "sequence"}
    assert cross == expected
    assert {"fork", "join", "cross-service"} <= set(cross.values())

    # the critical path: its edges highlighted, its events ringed on the canvas
    cp = critical_path(trace)
    assert {(s, t) for s, t, _, critical in drawn if critical} == set(cp.edges())
    assert d.execute_script("return ctxplaneViewer.criticalEventIds()") == list(cp.ids)
    on_path = d.execute_script("return ctxplaneViewer.eventPosition(arguments[0])", ids["hfork"])
    assert _has_colour(_canvas_pixels(d, on_path["x"], on_path["y"]), CRITICAL_RGB)
    off_path = d.execute_script("return ctxplaneViewer.eventPosition(arguments[0])", ids["recv0"])
    assert not _has_colour(_canvas_pixels(d, off_path["x"], off_path["y"]), CRITICAL_RGB)
    on_path_lanes = d.execute_script(
        "return Array.from(document.querySelectorAll('.lane-label.on-path'))"
        ".map(e => e.dataset.eu)")
    assert set(on_path_lanes) == {e.eu for e in cp.events}

    # before any click: where the path's time went, the worker thread of db-1 first
    breakdown = d.find_element("id", "critical-breakdown").text.splitlines()
    by_eu = sorted(cp.time_by_eu().items(), key=lambda item: -item[1])
    assert trace.eus[by_eu[0][0]].name == "pool-0"
    assert breakdown[0] == "pool-0 (db-1, pid 301)" and breakdown[1].startswith("9.90 ms")
    assert len(breakdown) == 2 * len(by_eu)

    # a click on an event shows its details
    _click(d, on_path["x"], on_path["y"])
    text = d.find_element("id", "details").text
    assert ids["hfork"] in text and "critical path\nyes" in text
    d.save_screenshot(str(_artifacts(tmp_path) / "viewer-fan-out.png"))

    # zoom with the keyboard, then a double-click fits the whole trace again
    from selenium.webdriver.common.action_chains import ActionChains

    fitted = d.execute_script("return ctxplaneViewer.window()")
    ActionChains(d).send_keys("+").perform()
    d.execute_script("return new Promise(r => requestAnimationFrame(() => r()))")
    zoomed = d.execute_script("return ctxplaneViewer.window()")
    assert zoomed[1] - zoomed[0] < 0.8 * (fitted[1] - fitted[0])
    ActionChains(d).double_click(d.find_element("id", "plot-area")).perform()
    assert d.execute_script("return ctxplaneViewer.window()") == fitted

    # another trace from the list; a click on a span shows its name and duration
    _pick(d, rpc.trace_id)
    pos = d.execute_script("return ctxplaneViewer.eventPosition(arguments[0])", rpc_ids["send"])
    _click(d, pos["x"], pos["y"] + 14)  # the span row under the send event
    text = d.find_element("id", "details").text
    assert "span: GET /x" in text and "3.50 ms" in text

    # hostile labels are text, never markup or script
    _pick(d, _HOSTILE.trace_id)
    assert d.title != "pwned"
    assert d.execute_script("return document.querySelectorAll('#labels img').length") == 0
    label = d.execute_script("return document.querySelector('.lane-label').textContent")
    assert label.startswith("<img src=x")

    shot = _artifacts(tmp_path) / "viewer.png"
    _pick(d, fan.trace_id)
    d.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
