"""Run CPython's own asyncio tests in this process and write each test's outcome as JSON.

Used by ``test_cpython_asyncio.py`` in a subprocess (never imported by pytest):

    python cpython_asyncio_driver.py --out result.json [--ctxplane] NAME...

NAME is a module of ``test.test_asyncio`` (``test_tasks``) or a test id below it
(``test_tasks.CTask_CFuture_Tests.test_gather``). Without ``--ctxplane`` the process must be
plain (ctxplane not imported); with it, ctxplane must have been activated at start-up
(``CTXPLANE_AUTO=1``), and the driver sets a non-empty baggage in the main thread's context
first, so that every event loop the tests run starts from it (as an application serving a
request would). The JSON holds ``outcomes`` (test id -> ``pass`` / ``fail`` / ``error`` /
``skip`` / ``xfail`` / ``xpass``), ``details`` (test id -> the end of the traceback) and
``task_type`` (the type of the tasks ``asyncio.create_task`` makes here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import unittest
from typing import Any

PACKAGE = "test.test_asyncio."


class _Recorder(unittest.TestResult):
    """Each test's outcome; a failing subtest fails its test."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, str] = {}
        self.details: dict[str, str] = {}

    def _set(self, test: Any, outcome: str, err: Any = None) -> None:
        tid = test.id()
        if self.outcomes.get(tid) in ("fail", "error") and outcome == "pass":
            return
        self.outcomes[tid] = outcome
        if err is not None:
            self.details[tid] = self._exc_info_to_string(err, test)[-3000:]

    def addSuccess(self, test: Any) -> None:
        self._set(test, "pass")

    def addFailure(self, test: Any, err: Any) -> None:
        self._set(test, "fail", err)

    def addError(self, test: Any, err: Any) -> None:
        # errors of module/class fixtures come with a placeholder "test"
        self._set(test, "error", err)

    def addSkip(self, test: Any, reason: str) -> None:
        self._set(test, "skip")
        self.details[test.id()] = reason

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        self._set(test, "xfail")

    def addUnexpectedSuccess(self, test: Any) -> None:
        self._set(test, "xpass")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._set(test, "fail" if failed else "error", err)


def _shard(suite: unittest.TestSuite, index: int, count: int) -> unittest.TestSuite:
    # whole classes (their fixtures run once), in the order of their names
    tests: list[unittest.TestCase] = []
    stack: list[Any] = [suite]
    while stack:
        s = stack.pop()
        if isinstance(s, unittest.TestSuite):
            stack.extend(s)
        else:
            tests.append(s)
    classes = sorted({type(t).__qualname__ for t in tests})
    mine = set(classes[index::count])
    tests.sort(key=lambda t: t.id())
    return unittest.TestSuite(t for t in tests if type(t).__qualname__ in mine)


def _task_type() -> str:
    async def main() -> str:
        t = asyncio.current_task()
        return f"{type(t).__module__}.{type(t).__qualname__}"

    return asyncio.run(main())


def _set_baggage() -> None:
    from ctxplane import COUNTER, STRING, Bag, field, set_of

    class Conformance(Bag, index=251):
        """What the main thread carries while CPython's tests run."""

        count = field(1, COUNTER)
        seen = field(2, set_of(STRING))

    Conformance.increment("count")
    Conformance.add("seen", "cpython-asyncio-tests")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--ctxplane", action="store_true")
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th test class from the i-th")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    if args.ctxplane:
        from ctxplane.patches import asyncio_

        if not asyncio_.is_patched():
            print("ctxplane is not active (run with CTXPLANE_AUTO=1)", file=sys.stderr)
            return 3
        _set_baggage()
    elif "ctxplane" in sys.modules:
        print("ctxplane is loaded in a bare run", file=sys.stderr)
        return 3
    task_type = _task_type()
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromName(PACKAGE + n) for n in args.names)
    index, count = (int(x) for x in args.shard.split("/"))
    if count > 1:
        suite = _shard(suite, index, count)
    result = _Recorder()
    suite.run(result)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {"outcomes": result.outcomes, "details": result.details, "task_type": task_type}, f
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
