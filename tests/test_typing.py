"""Typed bags (issue 8, point 10): a type checker sees what each field reads.

``mypy --strict`` runs on a small program in a temporary directory: the lines marked ``# E:``
must be reported (with that text), and no other line. The runtime side: counters print as
their value, and ``increment``/``add`` on the wrong kind of field say which field it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ctxplane import COUNTER, STRING, Bag, Counter, field, set_of
from ctxplane.transit import context

pytest.importorskip("mypy")

PROGRAM = '''
from ctxplane import COUNTER, INT64, STRING, TAINT, Bag, Counter, FrozenMap, field, map_of, set_of


class Trip(Bag, index=90201):
    hops = field(1, COUNTER)
    seen = field(2, set_of(STRING))
    name = field(3, STRING)
    flag = field(4, TAINT)
    per = field(5, map_of(STRING, INT64))


class Outer(Bag, index=90202):
    trip = field(1, Trip)


def correct() -> None:
    bag = Trip.current()
    n: int = bag.hops
    c: Counter = bag.hops
    s: frozenset[str] = bag.seen
    name: str | None = bag.name
    flag: bool = bag.flag
    per: FrozenMap[str, int] = bag.per
    got: Trip | None = Trip.get()
    new: Trip = bag.replace(name="x").join(Trip.current())
    again: Trip = Trip.increment("hops")
    inner: Trip | None = Outer.current().trip
    print(n, c, s, name, flag, per, got, new, again, inner, Trip.hops.number)


def wrong() -> None:
    bag = Trip.current()
    print(bag.hopz)  # E: "Trip" has no attribute "hopz"
    x: str = bag.hops  # E: expression has type "Counter", variable has type "str"
    y: set[int] = bag.seen  # E: expression has type "frozenset[str]"
    z: str = bag.name  # E: expression has type "str | None", variable has type "str"
    other: Outer = Trip.current()  # E: expression has type "Trip", variable has type "Outer"
    print(x, y, z, other)
'''


def _mypy(tmp_path: Path) -> dict[int, str]:
    (tmp_path / "typed_bags.py").write_text(PROGRAM)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".cache"),
         "typed_bags.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    errors: dict[int, str] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"typed_bags\.py:(\d+): error: (.*)", line)
        if m:
            errors[int(m.group(1))] = errors.get(int(m.group(1)), "") + m.group(2)
    return errors


def test_mypy_strict_sees_field_types_and_reports_misuse(tmp_path: Path) -> None:
    errors = _mypy(tmp_path)
    expected = {
        i + 1: line.split("# E: ", 1)[1]
        for i, line in enumerate(PROGRAM.splitlines())
        if "# E: " in line
    }
    assert expected and set(errors) == set(expected), errors
    for number, text in expected.items():
        assert text in errors[number], (number, errors[number])


class Tally(Bag, index=90203):
    count = field(1, COUNTER)
    where = field(2, set_of(STRING))


def test_a_counter_prints_as_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    c = Counter({b"a": 2, b"b": 3})
    print(c, Tally(count=7).count)
    assert capsys.readouterr().out == "5 7\n"
    assert str(c) == "5" and f"{c}" == "5" and f"{c:03d}" == "005"


def test_wrong_use_of_increment_and_add_names_the_field_and_its_kind() -> None:
    token = context._frame.set(context.Frame(context.current().empty()))
    try:
        with pytest.raises(TypeError, match=r"Tally\.where is a set<string> field, not a counter"):
            Tally.increment("where")
        with pytest.raises(TypeError, match=r"Tally\.count is a counter field, not a set"):
            Tally.add("count", "x")
        with pytest.raises(AttributeError, match=r"Tally has no field 'cuont' \(fields: count, wh"):
            Tally.increment("cuont")
        assert Tally.get() is None  # nothing was changed by the failed calls
        Tally.increment("count", 2)
        Tally.add("where", "here")
        assert Tally.current() == Tally(count=Tally.current().count, where={"here"})
        assert int(Tally.current().count) == 2
    finally:
        context._frame.reset(token)
