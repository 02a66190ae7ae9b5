"""Where recorded events go: the sink protocol, the JSON Lines trace file, an in-memory sink.

A sink receives records - plain dicts with the keys of ``docs/trace-format.md`` - in batches,
from the recorder's flush thread (never from the application's threads). Sinks must not block
for long; a sink that raises is reported once and the batch is lost for it, not for the others.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["FileSink", "MemorySink", "Sink"]


class Sink(Protocol):
    """What the recorder exports to."""

    def export(self, records: Sequence[Mapping[str, Any]]) -> None: ...  # from the flush thread

    def shutdown(self) -> None: ...


_CHUNK = 1 << 16
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


class FileSink:
    """Appends records to a JSON Lines trace file shared by every process of a run.

    The file is opened with ``O_APPEND``; each batch is written as whole lines, at most
    64 KiB per ``write``, so that processes appending to the same file never interleave inside
    a line (a local file's appends are atomic per write on Linux and macOS). A forked child
    opens its own descriptor. Readers need no merging: one file holds the whole run.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self._fd = -1
        self._pid = 0
        self.written = 0
        """Records written by this process."""

    def _open(self) -> int:
        pid = os.getpid()
        if self._fd < 0 or self._pid != pid:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = pid
        return self._fd

    def export(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append ``records``, one line each."""
        if not records:
            return
        fd = self._open()
        encode = _encode
        chunk: list[bytes] = []
        size = 0
        for r in records:
            line = (encode(r) + "\n").encode()
            if size + len(line) > _CHUNK and chunk:
                _write_all(fd, b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            _write_all(fd, b"".join(chunk))
        self.written += len(records)

    def export_lines(self, text: str, count: int) -> None:
        """Append ``count`` records already written as JSON lines (``text``: whole lines,
        each ending in a newline) - what the recorder gives a sink that has this method,
        instead of dicts for :meth:`export`."""
        if not text:
            return
        fd = self._open()
        data = text.encode()
        start, end = 0, len(data)
        while end - start > _CHUNK:
            cut = data.rfind(b"\n", start, start + _CHUNK) + 1
            if cut <= start:  # one line longer than a chunk: written whole
                cut = data.index(b"\n", start) + 1
            _write_all(fd, data[start:cut])
            start = cut
        if start < end:
            _write_all(fd, data[start:] if start else data)
        self.written += count

    def shutdown(self) -> None:
        """Close the file (a later export opens it again)."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._pid == os.getpid():
            os.close(fd)

    def __repr__(self) -> str:
        return f"FileSink({self.path!r})"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class MemorySink:
    """Keeps records in a list (tests, :mod:`ctxplane.testing`)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def export(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Keep copies of ``records``."""
        with self._lock:
            self.records.extend(dict(r) for r in records)

    def shutdown(self) -> None:
        """Nothing to release."""

    def clear(self) -> None:
        """Forget the records kept so far."""
        with self._lock:
            self.records.clear()
