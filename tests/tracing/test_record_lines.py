"""The flush thread writes a file sink's JSON lines straight from the buffered events: each
line must be, byte for byte, the JSON of the record dict that other sinks get (the schema of
docs/trace-format.md), whatever the names, labels and attributes hold."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

import ctxplane
from ctxplane.tracing import api, recorder
from ctxplane.tracing.reader import _lines, read_records
from ctxplane.tracing.sinks import FileSink, _encode

ODD = 'qu"ote \\ back\nnew\ttab \u00e9\u4e2d \U0001f600 \x01 \u2028'


class Keep:
    """A sink that keeps the record dicts it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def export(self, records: Any) -> None:
        self.records.extend(dict(r) for r in records)

    def shutdown(self) -> None:
        pass


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def _events() -> None:
    values: list[Any] = [
        ODD, 0, -1, 2**70, 1.5, float("inf"), True, None, [1, "a", 2.5, None, object()],
        ("t", ODD), {"x": 1}, b"bytes",
    ]
    with ctxplane.span(ODD, **{ODD: ODD, "n": 1}):
        for i, v in enumerate(values):
            ctxplane.event(f"e{i}", value=v, **{"k" + ODD: v})
        ctxplane.event("plain")

        def in_thread() -> None:
            with ctxplane.span("in-thread", kind="internal"):
                ctxplane.event("t")

        th = threading.Thread(target=in_thread, name=ODD)
        th.start()
        th.join()
    with ctxplane.span("second root"):
        pass


def test_lines_are_the_records_json(tmp_path: Path) -> None:
    """Every buffered event: the line the file sink writes == the JSON of its record dict."""
    api.start([], service=ODD, version="1.0" + ODD, namespace="ns", interval=3600)
    try:
        _events()
        rec = recorder.recorder
        items = list(rec.buf)
        assert len(items) >= 20
        for item in items:
            assert rec._line(item) == _encode(rec._record(item)) + "\n"
        rec.buf.clear()
    finally:
        api.stop()


def test_file_sink_writes_what_a_dict_sink_gets(tmp_path: Path) -> None:
    """The same run seen by a file sink (lines) and by a dict sink: equal records, in order."""
    path = tmp_path / "t.jsonl"
    keep = Keep()
    api.start([FileSink(str(path)), keep], service="svc", interval=3600)
    try:
        _events()
        recorder.flush()
        for _ in range(3):  # a second process generation: the per-EU parts are made again
            _events()
            recorder.flush()
    finally:
        api.stop()
    # (split on newlines only: U+2028 is written raw, as JSON allows, and str.splitlines
    # would cut there; the reader iterates the file, which does not)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines.pop() == ""
    assert len(lines) == len(keep.records) >= 80
    assert [json.loads(line, parse_constant=_not_json) for line in lines] == keep.records
    assert lines == [_encode(r) for r in keep.records]
    assert len(read_records(_lines([path])).events) == len(lines)


def test_long_lines_cross_write_chunks(tmp_path: Path) -> None:
    """Lines longer than one write chunk, and batches of many, are written whole and in order."""
    path = tmp_path / "big.jsonl"
    sink = FileSink(str(path))
    text = "".join(json.dumps({"i": i, "pad": "x" * (i * 9000)}) + "\n" for i in range(20))
    sink.export_lines(text, 20)
    sink.shutdown()
    got = [json.loads(line)["i"] for line in path.read_text().splitlines()]
    assert got == list(range(20))
    assert sink.written == 20


def _gather_join() -> None:
    async def child(i: int) -> None:
        ctxplane.event(f"child {i}")

    async def main() -> None:
        with ctxplane.span("fan-out"):
            await asyncio.gather(*(child(i) for i in range(20)))  # a join of 20 parents
            ctxplane.event("after")

    asyncio.run(main())


@pytest.mark.skipif(recorder._format_lines is None, reason="the compiled speedups are not built")
def test_compiled_lines_are_the_reference_lines() -> None:
    """The C formatter writes exactly what the pure-Python reference writes, odd strings,
    attribute values of every kind, many-parent joins and stale per-EU parts included."""
    api.start([], service=ODD, version="1.0" + ODD, namespace="ns", interval=3600)
    try:
        _events()
        _gather_join()
        rec = recorder.recorder
        items = list(rec.buf)
        rec.buf.clear()
        assert len(items) >= 40
        assert max(len(item[6]) for item in items) > 16  # (beyond the C stack buffer)
        for _ in range(2):  # second time: every EU's parts are stale and made again
            pure = rec.lines_pure(items)
            native = recorder._format_lines(
                items, rec.traces, rec._gen, rec._eu_parts, recorder._json_str,
                recorder._attrs_text,
            )  # fmt: skip
            assert native == pure
            assert rec._lines(items) == pure
            rec._gen += 1
        # integers the C code writes itself or through str(): seq and ts at and past the
        # edges of 64 bits, negative, zero; ids at their edges
        eu, *rest = items[0]
        edges = [0, -1, 9, 10, -(2**63), 2**63 - 1, 2**63, -(2**63) - 1, 10**30]
        ints = [(eu, q, rest[1], t, *rest[3:]) for q in edges for t in edges[:3] + edges[-2:]]
        ids = [(eu, *rest[:4], i, (i, 2**64 - 1 - i), *rest[6:]) for i in (0, 1, 2**64 - 1)]
        got = recorder._format_lines(ints + ids, rec.traces, rec._gen, rec._eu_parts,
                                     recorder._json_str, recorder._attrs_text)  # fmt: skip
        assert got == rec.lines_pure(ints + ids)
        # shapes the C code refuses (ids beyond 64 bits, a non-tuple) fall back to the reference
        odd = [(eu, *rest[:4], 2**64 + 5, *rest[5:])]
        with pytest.raises(OverflowError):
            recorder._format_lines(odd, rec.traces, rec._gen, rec._eu_parts,
                                   recorder._json_str, recorder._attrs_text)  # fmt: skip
        assert rec._lines(odd) == rec.lines_pure(odd) and f"{2**64 + 5:016x}" in rec._lines(odd)
        with pytest.raises(TypeError):
            recorder._format_lines([list(items[0])], rec.traces, rec._gen, rec._eu_parts,
                                   recorder._json_str, recorder._attrs_text)  # fmt: skip
    finally:
        api.stop()
