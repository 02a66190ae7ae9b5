"""The critical path on the happens-before DAG: hand-built DAGs with known answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from tracegen import BASE_NS, TraceBuilder, fan_out_trace, random_trace

from ctxplane.tracing import critical_path, load_traces
from ctxplane.tracing.analysis import aligned_times
from ctxplane.tracing.reader import Trace

MS = 1_000_000


def _load(b: TraceBuilder, tmp_path: Path) -> Trace:
    [trace] = load_traces(b.write(tmp_path / "t.jsonl", shuffle=True))
    return trace


def test_single_eu_is_its_own_path(tmp_path: Path) -> None:
    b = TraceBuilder()
    eu = b.eu("main", kind="main")
    ids = [eu.event("start", 0), eu.event("user", 1), eu.event("user", 3), eu.event("end", 6)]
    path = critical_path(_load(b, tmp_path))
    assert path.ids == tuple(ids)
    assert [s.duration_ns for s in path.steps] == [1 * MS, 2 * MS, 3 * MS]
    assert path.duration_ns == 6 * MS


@pytest.mark.parametrize("slowest", [0, 1, 2])
def test_join_the_slowest_branch_decides(tmp_path: Path, slowest: int) -> None:
    """gather of three tasks: the path leaves main at the slowest task's fork, runs through
    that task and comes back at the join; the other tasks are off the path."""
    b = TraceBuilder(seed=slowest)
    main = b.eu("main", kind="main")
    start = main.event("start", 0)
    forks, ends, tasks = [], [], []
    for i in range(3):
        fork = main.event("fork", 1 + i)
        task = b.eu(f"Task-{i}", after=fork)
        t0 = task.event("start", 1.5 + i)
        t_end = task.event("end", 30 if i == slowest else 10 + i)
        forks.append(fork)
        tasks.append((t0, t_end))
        ends.append(t_end)
    join = main.event("join", 31, joins=ends)
    end = main.event("end", 32)
    path = critical_path(_load(b, tmp_path))
    assert path.ids == (start, *forks[: slowest + 1], *tasks[slowest], join, end)
    assert path.duration_ns == 32 * MS
    by_eu = path.time_by_eu()
    trace_eus = {e.eu for e in path.events}
    assert len(trace_eus) == 2
    assert sum(by_eu.values()) == 32 * MS - (0.5 * MS) - 1 * MS  # minus the two cross-EU steps


def test_own_work_longer_than_the_joined_branch_keeps_the_path_home(tmp_path: Path) -> None:
    b = TraceBuilder()
    main = b.eu("main", kind="main")
    start = main.event("start", 0)
    fork = main.event("fork", 1)
    task = b.eu("Task-1", after=fork)
    task.event("start", 1.2)
    t_end = task.event("end", 2)  # done long before main looks
    work = main.event("user", 9, "own work")
    join = main.event("join", 10, joins=[t_end])
    path = critical_path(_load(b, tmp_path))
    assert path.ids == (start, fork, work, join)


@pytest.mark.parametrize(
    "skews", [(0.0, 0.0, 0.0), (3_600_000.0, -1_800_000.0, 2_000.0), (-5.0, 40.0, 9_999.0)]
)
def test_rpc_fan_out_whatever_the_clocks(tmp_path: Path, skews: tuple[float, float, float]) -> None:
    """The slowest RPC (db-1, with its own fork/join inside) is on the path, whatever the
    clocks of the three servers say: a server an hour ahead does not win for being late."""
    b, ids = fan_out_trace(skews)
    path = critical_path(_load(b, tmp_path))
    names = {v: k for k, v in ids.items()}
    assert [names[i] for i in path.ids] == [
        "start", "fork0", "fork1", "task1", "send1", "recv1", "hfork", "w0", "w1", "hjoin",
        "hend1", "reply1", "tend1", "join", "end",
    ]
    assert path.duration_ns == 21 * MS  # first and last events are on main's own clock


def test_aligned_times_undo_the_skews(tmp_path: Path) -> None:
    b, _ = fan_out_trace((3_600_000.0, -1_800_000.0, 2_000.0))
    trace = _load(b, tmp_path)
    times = aligned_times(trace)
    for eid, true_ms in b.true_ms.items():
        # the network time of each call (0.5 ms each way here) is split evenly
        assert abs(times[eid] - (BASE_NS + true_ms * MS)) <= 0.5 * MS


@pytest.mark.parametrize("outlives", [True, False])
def test_fork_with_no_join(tmp_path: Path, outlives: bool) -> None:
    """A fire-and-forget task is on the path only if it is what ended last."""
    b = TraceBuilder()
    main = b.eu("main", kind="main")
    start = main.event("start", 0)
    fork = main.event("fork", 1)
    bg = b.eu("background", after=fork)
    bg_start = bg.event("start", 1.5)
    bg_end = bg.event("end", 50 if outlives else 3)
    end = main.event("end", 10)
    path = critical_path(_load(b, tmp_path))
    assert path.ids == ((start, fork, bg_start, bg_end) if outlives else (start, fork, end))


def test_empty_trace_has_an_empty_path() -> None:
    path = critical_path(Trace("0" * 32, []))
    assert path.events == () and path.duration_ns == 0


@pytest.mark.parametrize("seed", range(4))
def test_random_traces_path_invariants(tmp_path: Path, seed: int) -> None:
    """On random multi-service traces: the path is a chain of DAG edges from a source to the
    last event, each step goes to the latest parent, and aligned times are near the truth."""
    b = random_trace(2_000, services=4, seed=seed)
    trace = _load(b, tmp_path)
    times = aligned_times(trace)
    path = critical_path(trace, times)
    first, last = path.events[0], path.events[-1]
    assert not [p for p in first.parents if p in trace.by_id]
    assert times[last.id] == max(times.values())
    for step in path.steps:
        assert step.src.id in step.dst.parents
        latest = max(times[p] for p in step.dst.parents if p in trace.by_id)
        assert times[step.src.id] == latest
    assert path.duration_ns == times[last.id] - times[first.id]
    for e in trace.events:
        assert all(times[p] <= times[e.id] for p in e.parents)
        assert abs(times[e.id] - (BASE_NS + b.true_ms[e.id] * MS)) <= 2 * MS


def test_a_join_across_spans_is_seen(tmp_path: Path) -> None:
    """Span A starts a prefetch task and ends; sibling span C later awaits the task. On the
    span tree the prefetch is A's child and A ended early, so C's 18 ms look like C's own
    work; on the DAG, the join edge puts the prefetch on the path."""
    b = TraceBuilder(seed=8)
    main = b.eu("handler", kind="handler")
    start = main.event("start", 0)
    a = main.span_start("A", 0.5)
    fork = main.event("fork", 1, "create_task")
    main.span_end(2)
    task = b.eu("prefetch", after=fork, in_span=a)
    task.span_start("prefetch", 1.5)
    pre_end = task.span_end(20)
    main.span_start("C", 3)
    join = main.event("join", 20.5, "await prefetch", joins=[pre_end])
    c_end = main.span_end(21)
    trace = _load(b, tmp_path)
    spans = {s.name: s for s in trace.spans}
    assert spans["prefetch"].start.parent_span == a  # structurally under A, which ended at 2
    path = critical_path(trace)
    assert path.ids[:2] == (start, spans["A"].start.id)
    assert path.ids[2:] == (fork, spans["prefetch"].start.id, pre_end, join, c_end)
    assert path.time_by_eu()[task.id] == 18_500_000
