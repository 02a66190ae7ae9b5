"""The ``ctxplane`` command, run for real in a subprocess (``python -m ctxplane``)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from tracegen import TraceBuilder, random_trace

TIMEOUT = 60


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctxplane", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def _hostile_trace() -> TraceBuilder:
    """Labels that would end the page's script element or inject markup if not escaped."""
    b = TraceBuilder(seed=9)
    main = b.eu("<b>main</b>", kind="main")
    main.event("start", 0, "</script><script>document.title='pwned'</script>")
    main.span_start("<!-- \u2028 & </SCRIPT>", 1)
    main.span_end(2)
    main.event("end", 3, "x", attrs={"q": "</script>"})
    return b


def test_view_writes_beside_the_first_file_and_prints_the_path(tmp_path: Path) -> None:
    first = random_trace(200, services=2, seed=1).write(tmp_path / "a.jsonl")
    second = _hostile_trace().write(tmp_path / "b.jsonl")
    (tmp_path / "a.jsonl").open("a").write('{"torn": \n')
    done = _run("view", first, second, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "a.html"
    assert done.stdout.strip() == str(out)
    assert "skipped 1 line" in done.stderr
    page = out.read_text(encoding="utf-8")
    # self-contained: nothing loaded from anywhere, and no label ends the data's script
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)=", page, re.IGNORECASE)
    assert "default-src 'none'" in page
    assert page.lower().count("</script>") == 2
    assert "\u2028" not in page
    data = page.split('id="ctxplane-data" type="application/json">')[1].split("</script>")[0]
    traces = json.loads(data)["traces"]
    assert len(traces) == 2
    hostile = next(t for t in traces if "<b>main</b>" in [lane["name"] for lane in t["lanes"]])
    assert "</script><script>document.title='pwned'</script>" in hostile["strings"]


def test_view_output_option(tmp_path: Path) -> None:
    trace = random_trace(100, services=2, seed=2).write(tmp_path / "t.jsonl")
    out = tmp_path / "new" / "dir" / "page.html"  # directories made as needed
    done = _run("view", trace, "-o", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert out.stat().st_size > 0


def test_view_of_no_trace_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("garbage\n", encoding="utf-8")
    done = _run("view", empty, cwd=tmp_path)
    assert done.returncode == 1
    assert "no trace" in done.stderr
    assert (tmp_path / "empty.html").exists()


def test_export_perfetto_to_a_file_and_to_stdout(tmp_path: Path) -> None:
    b = random_trace(300, services=3, seed=3)
    trace = b.write(tmp_path / "t.jsonl")
    done = _run("export", "--format", "perfetto", trace, "-o", tmp_path / "t.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "i") == len(b.records)
    piped = _run("export", "--format", "perfetto", trace, cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == doc


def test_export_otlp_json(tmp_path: Path) -> None:
    """OTLP JSON Lines come from ctxplane.tracing.otlp (another branch): without it, a clear
    error and status 2; with it, one JSON object a line."""
    trace = random_trace(100, services=2, seed=4).write(tmp_path / "t.jsonl")
    done = _run("export", "--format", "otlp-json", trace, cwd=tmp_path)
    if importlib.util.find_spec("ctxplane.tracing.otlp") is None:
        assert done.returncode == 2
        assert "OTLP JSON export" in done.stderr and "not available" in done.stderr
        assert done.stdout == ""
    else:
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines and all(isinstance(json.loads(line), dict) for line in lines)


def test_usage_errors(tmp_path: Path) -> None:
    missing = _run("view", tmp_path / "nope.jsonl", cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad_format = _run("export", "--format", "svg", tmp_path / "nope.jsonl", cwd=tmp_path)
    assert bad_format.returncode == 2 and "invalid choice" in bad_format.stderr
    assert _run(cwd=tmp_path).returncode == 2


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "ctxplane"
    if not script.exists():  # not installed in this interpreter's bin: the module is the script
        assert importlib.util.find_spec("ctxplane.commands") is not None
        return
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert done.returncode == 0 and "view" in done.stdout and "export" in done.stdout
