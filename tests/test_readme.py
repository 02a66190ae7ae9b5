"""The README's claims a user tries first, checked for real.

The "Using it" example is extracted from README.md and run as written, in a fresh interpreter
with no ``CTXPLANE_*`` variable set, from a temporary directory (as a user would save and run
it). Its tables must be well-formed Markdown (a header row, then a separator row).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BENCH_README = ROOT / "benchmarks" / "README.md"


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _python_block(section: str) -> str:
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "no python block"
    return match.group(1)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "visits_demo.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_using_it_example_runs_as_written_and_prints_what_the_readme_says(
    tmp_path: Path,
) -> None:
    section = _section(README.read_text(), "Using it")
    code = _python_block(section)
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed == "5 ['task-0', 'task-1', 'task-2', 'task-3', 'task-4']"
    assert f"`{printed}`" in section  # the README quotes the output it prints


def test_using_it_example_without_its_first_line_prints_what_the_readme_says(
    tmp_path: Path,
) -> None:
    section = _section(README.read_text(), "Using it")
    code = _python_block(section)
    first, rest = code.split("\n", 1)
    assert first.startswith("import ctxplane.auto")
    done = _run(rest, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 []"
    assert "prints `0 []`" in section


def _tables(text: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("|"):
            current.append(line)
            continue
        if current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_every_readme_table_has_a_header_and_a_separator_row() -> None:
    for path in (README, BENCH_README):
        tables = _tables(path.read_text())
        assert tables, path
        for table in tables:
            assert len(table) >= 3, (path, table)
            assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", table[1]), (path, table[:2])
            columns = table[0].count("|") - table[0].count("\\|")
            for row in table:
                assert row.count("|") - row.count("\\|") == columns, (path, row)


def test_fold_marker_row_is_in_the_carrier_table() -> None:
    wire = _section(README.read_text(), "On the wire")
    (carriers, *_) = _tables(wire)
    assert carriers[0].startswith("| carrier | name | format |")
    assert any(row.startswith("| fold marker |") for row in carriers)


def test_benchmark_figures_live_in_benchmarks_readme() -> None:
    readme = README.read_text()
    bench = BENCH_README.read_text()
    assert "Targets not met" not in readme and "## Targets not met" in bench
    assert "pip install -e '.[bench]'" in bench
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        assert f"python3 benchmarks/{script.name}" in bench, script.name
