"""The X-Trace bag against the reference's vectors (what a Java X-Trace reader sees), the
tracing configuration, activation through the environment, and the import cost when off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctxplane.baggage import Baggage
from ctxplane.config import load
from ctxplane.tracing import sampling, xtrace

VECTORS = Path(__file__).parent.parent / "vectors" / "bdl_xtrace.json"
U64 = (1 << 64) - 1


def cases(op: str) -> list[dict]:  # type: ignore[type-arg]
    return [c for c in json.loads(VECTORS.read_text())["cases"] if c["op"] == op]


@pytest.mark.parametrize("case", cases("serialize"), ids=lambda c: c["note"])
def test_reader_sees_the_reference_bag(case: dict) -> None:  # type: ignore[type-arg]
    """read() on the reference's bytes gives its task id and parent ids (unsigned)."""
    b = Baggage.from_bytes(bytes.fromhex(case["context_bytes"]))
    got = xtrace.read(b)
    value = case["value"]
    if value["taskId"] is None and not value["parentEventIds"]:
        assert got is None
        return
    assert got is not None
    task, parents, _ = got
    assert task == (value["taskId"] or 0) & U64
    assert sorted(parents) == sorted(p & U64 for p in value["parentEventIds"] or ())


@pytest.mark.parametrize("case", cases("join"), ids=lambda c: c["note"])
def test_join_is_the_references_union(case: dict) -> None:  # type: ignore[type-arg]
    a = Baggage([bytes.fromhex(x) for x in case["a_context_atoms"] or ()])
    b = Baggage([bytes.fromhex(x) for x in case["b_context_atoms"] or ()])
    joined = a.join(b)
    assert joined.to_bytes().hex() == case["merged_context_bytes"]
    got = xtrace.read(joined)
    want = case["atom_join_result"]
    if got is not None:
        assert sorted(got[1]) == sorted(p & U64 for p in want["parentEventIds"] or ())


def test_writer_bytes_match_the_reference_encoding() -> None:
    """What an event writes is the reference's serialization of {taskId, {event id}}."""
    task, event = 0x1234_5678_9ABC_DEF0, 0xFEDC_BA98_7654_3210
    ours = xtrace.replace(xtrace.with_task(Baggage.empty(), task), (-1, -1), task, event)
    typed = Baggage.empty().with_bag(xtrace.XTraceBaggage(taskId=task, parentEventIds={event}))
    assert ours.to_bytes() == typed.to_bytes()
    assert ours.to_bytes().hex() == (
        "02f80702f00109001234" "56789abcdef002f00209" "00fedcba9876543210"
    )
    # the fast path (replace in place) writes the same bytes
    seg = xtrace.read(ours)
    assert seg is not None
    again = xtrace.replace(ours, seg[2], task, event)
    assert again.to_bytes() == ours.to_bytes()


def test_task_id_is_the_low_64_bits_of_the_trace_id() -> None:
    assert xtrace.task_of_trace("4bf92f3577b34da6a3ce929d0e0e4736") == 0xA3CE929D0E0E4736


def test_config_reads_the_tracing_variables() -> None:
    c = load({
        "CTXPLANE_TRACE_FILE": " /tmp/t.jsonl ",
        "CTXPLANE_SAMPLE": "ratio:0.25,rate:100",
        "CTXPLANE_TRACE_OTLP": "1",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=otel-name,service.version=1.2,"
        "service.namespace=shop%20floor",
    })
    assert c.tracing and c.trace_file == "/tmp/t.jsonl" and c.trace_otlp
    assert c.sample == "ratio:0.25,rate:100"
    assert (c.service_name, c.service_version, c.service_namespace) == (
        "otel-name", "1.2", "shop floor"
    )
    c = load({"CTXPLANE_SERVICE_NAME": "mine", "OTEL_SERVICE_NAME": "theirs",
              "CTXPLANE_SAMPLE": "2.5"})
    assert c.service_name == "mine" and c.sample == "always"  # invalid: the default
    assert not load({}).tracing


def test_sampler_specs() -> None:
    assert sampling.parse("never").decide("f" * 32) is False
    assert sampling.parse("always").decide("0" * 32) is True
    s = sampling.parse("0.5")
    assert s.decide("0" * 18 + "7fffffffffffff") and not s.decide("0" * 18 + "80000000000000")
    limited = sampling.parse("rate:2")
    assert sum(limited.decide("0" * 32) for _ in range(10)) == 2  # the bucket holds 2
    with pytest.raises(ValueError):
        sampling.parse("ratio:1.5")


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_tracing_off_imports_nothing_of_it() -> None:
    from ctxplane.cli import build_env

    env = build_env({k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}, {})
    code = (
        "import sys, asyncio, threading, ctxplane\n"
        "async def main():\n"
        "    await asyncio.gather(asyncio.sleep(0))\n"
        "asyncio.run(main())\n"
        "print(ctxplane.is_active(), sorted(m for m in sys.modules if 'tracing' in m))\n"
    )
    assert _run(code, env).split() == ["True", "[]"]


def test_run_t_writes_the_trace(tmp_path: Path) -> None:
    """``ctxplane-run -t PATH`` (the environment it builds) turns tracing on in the child."""
    from ctxplane.cli import build_env, parse_args

    path = tmp_path / "run.jsonl"
    settings, _ = parse_args(["-t", str(path), "python", "x.py"])
    env = build_env(os.environ, {**settings, "CTXPLANE_SERVICE_NAME": "runner"})
    code = (
        "import ctxplane, sys\n"
        "with ctxplane.span('work', n=1):\n"
        "    ctxplane.event('inside')\n"
    )
    _run(code, env)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["label"] for r in records] == ["work", "inside", "work"]
    assert {r["service"] for r in records} == {"runner"}


def test_ctxplane_run_t_relative_path_is_one_file_for_every_process(tmp_path: Path) -> None:
    """``ctxplane-run -t rel.jsonl``: a child process started in another directory still
    writes there."""
    script = Path(sys.executable).parent / "ctxplane-run"
    run = [str(script)] if script.exists() else [sys.executable, "-m", "ctxplane.cli"]
    (tmp_path / "elsewhere").mkdir()
    code = (
        "import subprocess, sys\n"
        "inner = 'import ctxplane\\nwith ctxplane.span(\"moved\"):\\n    pass\\n'\n"
        "subprocess.run([sys.executable, '-c', inner], cwd='elsewhere', check=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    out = subprocess.run(
        [*run, "-t", "rel.jsonl", sys.executable, "-c", code],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    labels = [json.loads(line)["label"] for line in (tmp_path / "rel.jsonl").read_text().split()]
    assert labels == ["moved", "moved"]
    assert not (tmp_path / "elsewhere" / "rel.jsonl").exists()
