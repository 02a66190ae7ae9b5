"""The ``ctxplane`` command: look at trace files.

``ctxplane view TRACE_FILE... [-o OUT.html]`` writes the self-contained HTML viewer (default:
beside the first file, its name with ``.html``) and prints its path.
``ctxplane export --format perfetto|otlp-json TRACE_FILE... [-o OUT]`` converts the traces to
Chrome/Perfetto Trace Event JSON or to the OTLP JSON Lines file format (default: stdout).
Exit status: 0 done, 1 no trace in the files, 2 usage error or a missing part.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxplane", description="Look at ctxplane trace files.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    view = sub.add_parser("view", help="write the HTML viewer of trace files and print its path")
    view.add_argument("files", nargs="+", metavar="TRACE_FILE", type=Path)
    view.add_argument("-o", "--output", type=Path, metavar="OUT.html",
                      help="where to write the page (default: beside the first file)")
    export = sub.add_parser("export", help="convert trace files for other tools")
    export.add_argument("--format", required=True, choices=["perfetto", "otlp-json"])
    export.add_argument("files", nargs="+", metavar="TRACE_FILE", type=Path)
    export.add_argument("-o", "--output", type=Path, metavar="OUT",
                        help="where to write (default: standard output)")
    return parser


def _valid_records(files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """The records of the files that are valid trace events, as decoded JSON objects."""
    from .tracing.reader import parse_event

    for path in files:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if parse_event(record) is not None:
                    yield record


def _view(files: Sequence[Path], output: Path | None) -> int:
    from .tracing.reader import load_traces
    from .tracing.viewer import write_html

    traces = load_traces(files)
    if traces.skipped:
        print(f"ctxplane: skipped {traces.skipped} line(s) that are not trace events",
              file=sys.stderr)
    out = output or files[0].with_suffix(".html")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_html(traces, out, title=f"ctxplane: {', '.join(f.name for f in files)}")
    if not traces:
        print("ctxplane: no trace in the file(s); the page says so", file=sys.stderr)
    print(out)
    return 0 if traces else 1


def _export(fmt: str, files: Sequence[Path], output: Path | None) -> int:
    chunks: Iterator[str]
    if fmt == "perfetto":
        from .tracing.perfetto import perfetto_json
        from .tracing.reader import load_traces

        traces = load_traces(files)
        if traces.skipped:
            print(f"ctxplane: skipped {traces.skipped} line(s) that are not trace events",
                  file=sys.stderr)
        if not traces:
            print("ctxplane: no trace in the file(s)", file=sys.stderr)
            return 1
        chunks = iter([perfetto_json(traces) + "\n"])
    else:
        # written on another branch: looked up at run time, so that its absence is a clear error
        try:
            otlp: Any = importlib.import_module("ctxplane.tracing.otlp")
            otlp_json_lines: Callable[[Iterable[Mapping[str, Any]]], Iterator[str]]
            otlp_json_lines = otlp.otlp_json_lines
        except (ImportError, AttributeError):
            print("ctxplane: the OTLP JSON export (ctxplane.tracing.otlp.otlp_json_lines) is not "
                  "available in this installation", file=sys.stderr)
            return 2
        chunks = (line.rstrip("\n") + "\n" for line in otlp_json_lines(_valid_records(files)))
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
        print(output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ctxplane`` with ``argv`` (default: the process's arguments); returns the status."""
    args = _parser().parse_args(argv)
    missing = [f for f in args.files if not f.is_file()]
    if missing:
        print(f"ctxplane: no such file: {missing[0]}", file=sys.stderr)
        return 2
    if args.command == "view":
        return _view(args.files, args.output)
    return _export(args.format, args.files, args.output)


if __name__ == "__main__":
    sys.exit(main())
