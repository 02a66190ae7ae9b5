"""Tests for ctxplane.wire.w3c: W3C Trace Context Level 2 and W3C Baggage interop."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxplane.wire import w3c
from ctxplane.wire.w3c import (
    BaggageMember,
    TraceContext,
    TraceParent,
    extract,
    format_baggage,
    format_traceparent,
    format_tracestate,
    get_all,
    inject,
    new_traceparent,
    parse_baggage,
    parse_traceparent,
    parse_tracestate,
    with_entry,
)

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"
TP = f"00-{TID}-{PID}-01"
TP_RE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
MB = 1 << 20

pytestmark = pytest.mark.timeout(60)  # a hang guard: the work itself is checked by counting


def collect(ctx: TraceContext) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    inject(ctx, lambda n, v: out.append((n, v)))
    return out


class _Probe(str):
    """A field value that counts the characters a parser takes from it in Python (slices,
    strip, split, search...) into its :class:`Fields`."""

    _fields: Fields

    def __new__(cls, value: str, fields: Fields) -> _Probe:
        self = super().__new__(cls, value)
        self._fields = fields
        return self

    def __getitem__(self, i: Any) -> str:
        part = super().__getitem__(i)
        self._fields.chars_read += len(part)
        return part

    def _whole(name: str) -> Any:  # type: ignore[misc]
        def method(self: _Probe, *args: Any, **kwargs: Any) -> Any:
            self._fields.chars_read += len(self)
            return getattr(str, name)(self, *args, **kwargs)

        return method

    for _name in ("strip", "lstrip", "rstrip", "split", "rsplit", "partition", "rpartition",
                  "find", "rfind", "index", "rindex", "lower", "upper", "encode", "replace",
                  "splitlines", "startswith", "endswith", "count", "__iter__", "__contains__"):
        locals()[_name] = _whole(_name)
    del _name, _whole


class Fields(list[str]):
    """Header field values that count what a parser takes from them: the values it reads and
    the characters it takes from them in Python. A parser that checks its caps before working
    takes a bounded amount whatever the size of the input, so the counts check the work with
    no clock (a hang is left to the test's timeout)."""

    def __init__(self, values: list[str]) -> None:
        super().__init__(values)
        self.values_read = 0
        self.chars_read = 0

    def _take(self, value: str) -> str:
        self.values_read += 1
        return _Probe(value, self)

    def __iter__(self) -> Iterator[str]:
        return (self._take(v) for v in super().__iter__())

    def __getitem__(self, i: Any) -> Any:
        assert not isinstance(i, slice), "the parser copies the list of values"
        return self._take(super().__getitem__(i))


def bounded(fn: Callable[[Fields], object], values: list[str], cap: int) -> object:
    """``fn(values)``, checking that it read at most ``cap`` characters' worth of the input:
    at most ``cap + 1`` values (each costs a comma at least) and ``cap`` characters."""
    fields = Fields(values)
    result = fn(fields)
    assert fields.values_read <= cap + 1, f"read {fields.values_read} values"
    assert fields.chars_read <= cap, f"took {fields.chars_read} characters"
    return result


# --------------------------------------------------------------------------- get_all


def test_get_all_mapping_is_case_insensitive() -> None:
    assert get_all({"TraceParent": TP, "x": "y"}, "traceparent") == [TP]
    assert get_all({"x": "y"}, "traceparent") == []


def test_get_all_pairs_keep_order_and_decode_bytes() -> None:
    pairs: list[tuple[str | bytes, str | bytes]] = [
        ("Baggage", "a=1"),
        ("x", "y"),
        ("BAGGAGE", "b=2"),
        (b"baggage", b"c=3"),
    ]
    assert get_all(pairs, "baggage") == ["a=1", "b=2", "c=3"]


def test_get_all_multidict() -> None:
    multidict = pytest.importorskip("multidict")
    headers = multidict.CIMultiDict([("tracestate", "a=1"), ("TraceState", "b=2")])
    assert get_all(headers, "TRACESTATE") == ["a=1", "b=2"]
    plain = multidict.MultiDict([("Tracestate", "a=1"), ("tracestate", "b=2")])
    assert get_all(plain, "tracestate") == ["a=1", "b=2"]


# --------------------------------------------------------------------------- traceparent


def test_traceparent_valid() -> None:
    assert parse_traceparent([TP]) == TraceParent(TID, PID, 1)
    assert parse_traceparent([f"00-{TID}-{PID}-00"]) == TraceParent(TID, PID, 0)
    assert parse_traceparent(TP) == TraceParent(TID, PID, 1)  # a bare str is one field


def test_traceparent_surrounding_ows_stripped() -> None:
    assert parse_traceparent([f" \t{TP}\t "]) == TraceParent(TID, PID, 1)
    assert parse_traceparent([f"\n{TP}"]) is None  # only SP/HTAB are OWS


def test_traceparent_exactly_one_field() -> None:
    assert parse_traceparent([]) is None
    assert parse_traceparent([TP, TP]) is None
    assert parse_traceparent([TP, ""]) is None
    assert parse_traceparent([f"{TP},{TP}"]) is None  # folded duplicates


@pytest.mark.parametrize(
    "value",
    [
        TP.upper(),
        f"00-{TID.upper()}-{PID}-01",
        f"00-{TID}-{PID.upper()}-01",
        f"00-{TID}-{PID}-0A",
        f"00-{TID[:-1]}-{PID}-01",
        f"00-{TID}0-{PID}-01",
        f"00-{TID}-{PID[:-1]}-01",
        f"00-{TID}-{PID}-1",
        f"0-{TID}-{PID}-01",
        f"00_{TID}-{PID}-01",
        f"00-{TID}-{PID}_01",
        f"00-{TID[:-1]}g-{PID}-01",
        f"00-{TID}-{PID}-0x",
        "",
        "00",
    ],
)
def test_traceparent_layout_invalid(value: str) -> None:
    assert parse_traceparent([value]) is None


def test_traceparent_version_ff_invalid() -> None:
    assert parse_traceparent([f"ff-{TID}-{PID}-01"]) is None
    assert parse_traceparent([f"fe-{TID}-{PID}-01"]) == TraceParent(TID, PID, 1)


def test_traceparent_version_00_nothing_after_flags() -> None:
    assert parse_traceparent([f"{TP}-"]) is None
    assert parse_traceparent([f"{TP}-abc"]) is None
    assert parse_traceparent([f"{TP}x"]) is None


def test_traceparent_higher_version() -> None:
    assert parse_traceparent([f"cc-{TID}-{PID}-01"]) == TraceParent(TID, PID, 1)
    assert parse_traceparent([f"cc-{TID}-{PID}-01-what-ever"]) == TraceParent(TID, PID, 1)
    assert parse_traceparent([f"cc-{TID}-{PID}-01x"]) is None
    assert parse_traceparent([f"cc-{TID}-{PID}-01.future"]) is None
    assert parse_traceparent([f"cc-{TID}-{PID}"]) is None  # shorter than 55


def test_higher_version_reemitted_as_00() -> None:
    ctx = extract({"traceparent": f"cc-{TID}-{PID}-03-extra"})
    assert ctx.valid_inbound
    ((name, value),) = collect(ctx)
    assert name == "traceparent"
    assert value.startswith(f"00-{TID}-") and value.endswith("-03")
    assert TP_RE.fullmatch(value)


def test_traceparent_all_zero_ids_invalid() -> None:
    assert parse_traceparent([f"00-{'0' * 32}-{PID}-01"]) is None
    assert parse_traceparent([f"00-{TID}-{'0' * 16}-01"]) is None
    assert parse_traceparent([f"00-{'0' * 31}1-{'0' * 15}1-01"]) is not None


def test_traceparent_huge_header_rejected_with_bounded_work() -> None:
    cap = w3c._TRACEPARENT_MAX_LEN
    assert bounded(parse_traceparent, [TP + "-" + "a" * MB], cap) is None
    assert bounded(parse_traceparent, [" " * MB + TP], cap) is None
    assert bounded(parse_traceparent, [TP] * MB, cap) is None
    assert bounded(parse_traceparent, [TP], cap) == parse_traceparent([TP])  # the probe reads


def test_format_traceparent() -> None:
    assert format_traceparent(TraceParent(TID, PID, 1)) == TP
    assert format_traceparent(TraceParent(TID, PID, 0x83)) == f"00-{TID}-{PID}-83"


def test_child_keeps_trace_and_known_flags() -> None:
    tp = TraceParent(TID, PID, 0xFF)
    child = tp.child()
    assert child.trace_id == TID
    assert child.parent_id != PID
    assert re.fullmatch(r"[0-9a-f]{16}", child.parent_id)
    assert child.flags == 0x03
    assert TraceParent(TID, PID, 0x01).child().flags == 0x01
    assert TraceParent(TID, PID, 0x02).child().flags == 0x02
    assert TraceParent(TID, PID, 0xFC).child().flags == 0x00


def test_child_parent_ids_are_fresh() -> None:
    tp = TraceParent(TID, PID, 1)
    ids = {tp.child().parent_id for _ in range(2000)}
    assert len(ids) == 2000
    assert PID not in ids


def test_ids_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([0, 0, 7, 0, 9])
    monkeypatch.setattr(w3c._rng, "getrandbits", lambda bits: next(draws))
    tp = new_traceparent()
    assert tp.trace_id == f"{7:032x}"
    assert tp.parent_id == f"{9:016x}"


def test_new_traceparent() -> None:
    tp = new_traceparent()
    assert tp.flags == w3c.FLAG_RANDOM | w3c.FLAG_SAMPLED and tp.sampled
    assert new_traceparent(sampled=False).flags == w3c.FLAG_RANDOM
    assert parse_traceparent([format_traceparent(tp)]) == tp
    assert new_traceparent().trace_id != tp.trace_id


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_rng_reseeded_after_fork() -> None:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(write_fd, new_traceparent().trace_id.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    child_id = os.read(read_fd, 64).decode()
    os.close(read_fd)
    os.waitpid(pid, 0)
    assert len(child_id) == 32
    assert child_id != new_traceparent().trace_id


# --------------------------------------------------------------------------- extract / inject


def test_extract_valid_inbound() -> None:
    headers = {"Traceparent": TP, "TRACESTATE": "congo=t61rcWkgMzE", "Baggage": "k=v"}
    ctx = extract(headers)
    assert ctx.valid_inbound
    assert ctx.traceparent == TraceParent(TID, PID, 1)
    assert ctx.tracestate == (("congo", "t61rcWkgMzE"),)
    assert ctx.baggage == (BaggageMember("k", "v"),)


def test_extract_invalid_traceparent_starts_new_trace() -> None:
    headers = [
        ("traceparent", f"00-{TID}-{'0' * 16}-01"),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("baggage", "k=v"),
    ]
    ctx = extract(headers)
    assert not ctx.valid_inbound
    assert ctx.traceparent.trace_id != TID
    assert ctx.traceparent.flags & w3c.FLAG_RANDOM
    assert ctx.tracestate == ()
    assert ctx.baggage == (BaggageMember("k", "v"),)
    names = [n for n, _ in collect(ctx)]
    assert names == ["traceparent", "baggage"]


def test_extract_two_traceparents_is_invalid() -> None:
    ctx = extract([("traceparent", TP), ("Traceparent", TP), ("tracestate", "a=1")])
    assert not ctx.valid_inbound
    assert ctx.traceparent.trace_id != TID
    assert ctx.tracestate == ()


def test_baggage_without_traceparent_is_sent() -> None:
    ctx = extract({"baggage": "user=alice"})
    assert not ctx.valid_inbound
    sent = dict(collect(ctx))
    assert sent["baggage"] == "user=alice"
    assert TP_RE.fullmatch(sent["traceparent"])
    assert "tracestate" not in sent


def test_invalid_tracestate_keeps_trace() -> None:
    ctx = extract({"traceparent": TP, "tracestate": "Bad=1"})
    assert ctx.valid_inbound
    assert ctx.traceparent.trace_id == TID
    assert ctx.tracestate == ()
    assert [n for n, _ in collect(ctx)] == ["traceparent"]


def test_inject_each_request_gets_new_parent() -> None:
    ctx = extract({"traceparent": f"00-{TID}-{PID}-ff", "tracestate": "a=1, b=2"})
    first, second = collect(ctx), collect(ctx)
    for sent in (first, second):
        assert [n for n, _ in sent].count("traceparent") == 1
        tp = parse_traceparent([dict(sent)["traceparent"]])
        assert tp is not None
        assert tp.trace_id == TID and tp.parent_id != PID and tp.flags == 0x03
        assert dict(sent)["tracestate"] == "a=1,b=2"
    assert dict(first)["traceparent"] != dict(second)["traceparent"]


def test_inject_returns_sent_parent() -> None:
    ctx = TraceContext(TraceParent(TID, PID, 1))
    sent: dict[str, str] = {}
    child = inject(ctx, sent.__setitem__)
    assert sent == {"traceparent": format_traceparent(child)}


# --------------------------------------------------------------------------- tracestate


def test_tracestate_fields_combined_in_order() -> None:
    assert parse_tracestate(["b=2", "a=1,c=3"]) == (("b", "2"), ("a", "1"), ("c", "3"))
    assert parse_tracestate([]) == ()
    assert parse_tracestate("a=1") == (("a", "1"),)


def test_tracestate_empty_members_and_ows_ignored() -> None:
    assert parse_tracestate([" a=1 ,\t, ,b=2\t", "", " "]) == (("a", "1"), ("b", "2"))
    assert parse_tracestate(["a=1,,", ",b=2"]) == (("a", "1"), ("b", "2"))
    assert parse_tracestate([""]) == ()


def test_tracestate_ows_not_allowed_around_equals() -> None:
    assert parse_tracestate(["a =1"]) is None


def test_tracestate_value_spaces() -> None:
    assert parse_tracestate(["a=  x y"]) == (("a", "  x y"),)
    assert parse_tracestate(["a=x  ,b=2"]) == (("a", "x"), ("b", "2"))
    assert parse_tracestate(["a=x\ty"]) is None


@pytest.mark.parametrize(
    "key",
    ["a", "0", "9vendor", "a_b-c*d/e", "tenant@system", "0tenant@sys", "a@b@c", "x" * 256],
)
def test_tracestate_key_valid(key: str) -> None:
    assert parse_tracestate([f"{key}=v"]) == ((key, "v"),)


@pytest.mark.parametrize(
    "key", ["", "A", "aB", "_a", "@a", "-a", "*a", "/a", "a.b", "a b", "ä", "x" * 257]
)
def test_tracestate_key_invalid(key: str) -> None:
    assert parse_tracestate([f"ok=1,{key}=v"]) is None


@pytest.mark.parametrize(
    "value", ["v", " v", "!~", "a b", "x" * 256, "".join(map(chr, range(0x21, 0x2C)))]
)
def test_tracestate_value_valid(value: str) -> None:
    assert parse_tracestate([f"k={value}"]) == (("k", value),)


@pytest.mark.parametrize(
    "value", ["a=b", "x" * 257, "a\x7f", "a\x1f", "é", "a\nb", "", " ", "  "]
)
def test_tracestate_value_invalid(value: str) -> None:
    assert parse_tracestate([f"k={value}"]) is None


def test_tracestate_member_with_empty_value_is_invalid() -> None:
    # issue 8 point 6: value = 0*255(chr) nblk-chr, at least one non-blank character
    assert parse_tracestate(["foo="]) is None
    assert parse_tracestate(["a=1,foo=,b=2"]) is None  # one invalid member drops it all
    with pytest.raises(ValueError):
        with_entry((("a", "1"),), "foo", "")


def test_tracestate_missing_equals_drops_all() -> None:
    assert parse_tracestate(["a=1,novalue,b=2"]) is None


def test_tracestate_member_limit() -> None:
    members = [f"k{i}=v" for i in range(32)]
    state = parse_tracestate([",".join(members)])
    assert state is not None and len(state) == 32
    assert parse_tracestate([",".join([*members, "k32=v"])]) is None
    assert parse_tracestate([",".join(members), "", " , "]) == state


def test_tracestate_duplicates_kept() -> None:
    assert parse_tracestate(["a=1,b=2,a=3"]) == (("a", "1"), ("b", "2"), ("a", "3"))


def test_tracestate_forwarded_unchanged() -> None:
    text = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,t@sys= x!"
    state = parse_tracestate([text])
    assert state is not None
    assert format_tracestate(state) == text


def test_tracestate_huge_rejected_with_bounded_work() -> None:
    cap = w3c._TRACESTATE_MAX_LEN
    assert bounded(parse_tracestate, ["a=1," * (MB // 4)], cap) is None
    assert bounded(parse_tracestate, ["a=1"] * MB, cap) is None
    assert bounded(parse_tracestate, ["a" * MB], cap) is None


def test_with_entry_moves_to_left() -> None:
    state = (("a", "1"), ("ours", "old"), ("b", "2"), ("ours", "older"))
    assert with_entry(state, "ours", "new") == (("ours", "new"), ("a", "1"), ("b", "2"))
    assert with_entry((), "ours", "v") == (("ours", "v"),)


def test_with_entry_caps_at_32_dropping_right() -> None:
    state = tuple((f"k{i}", "v") for i in range(32))
    result = with_entry(state, "ours", "x")
    assert len(result) == 32
    assert result[0] == ("ours", "x")
    assert result[1:] == state[:31]
    replaced = with_entry(state, "k5", "x")
    assert len(replaced) == 32 and replaced[0] == ("k5", "x") and ("k31", "v") in replaced


@pytest.mark.parametrize(("key", "value"), [("Bad", "v"), ("k", "a,b"), ("k", "v "), ("", "v")])
def test_with_entry_rejects_invalid(key: str, value: str) -> None:
    with pytest.raises(ValueError):
        with_entry((), key, value)


# --------------------------------------------------------------------------- baggage


def test_baggage_fields_combined() -> None:
    assert parse_baggage(["a=1", "b=2,c=3"]) == (
        BaggageMember("a", "1"),
        BaggageMember("b", "2"),
        BaggageMember("c", "3"),
    )
    assert parse_baggage([]) == ()
    assert parse_baggage("a=1") == (BaggageMember("a", "1"),)


def test_baggage_ows() -> None:
    assert parse_baggage([" a = 1 ,\tb\t=\t2 ; p = x ; q ", " , "]) == (
        BaggageMember("a", "1"),
        BaggageMember("b", "2", "p = x ; q"),
    )


def test_baggage_key_is_token_and_not_decoded() -> None:
    assert parse_baggage(["k%41=v", "Key!#$&'*+-.^_`|~9=v"]) == (
        BaggageMember("k%41", "v"),
        BaggageMember("Key!#$&'*+-.^_`|~9", "v"),
    )


@pytest.mark.parametrize("member", ["=v", "a b=v", "k(=v", 'k"=v', "k", "é=v", "k:x=v"])
def test_baggage_bad_key_skipped(member: str) -> None:
    assert parse_baggage([f"a=1,{member},b=2"]) == (
        BaggageMember("a", "1"),
        BaggageMember("b", "2"),
    )


def test_baggage_value_decoding() -> None:
    got = parse_baggage(["a=x+y", "b=x%20y", "c=%E2%9C%93", "d=%e2%9c%93", "e=", "f=%25"])
    assert [m.value for m in got] == ["x+y", "x y", "\u2713", "\u2713", "", "%"]


def test_baggage_invalid_percent_and_utf8_become_replacement() -> None:
    got = parse_baggage(["a=%zz", "b=x%", "c=%4", "d=%C3", "e=%FF%41", "f=%C3%A9"])
    assert [m.value for m in got] == [
        "\ufffdzz",
        "x\ufffd",
        "\ufffd4",
        "\ufffd",
        "\ufffdA",
        "\u00e9",
    ]


@pytest.mark.parametrize("value", ["a b", 'a"b', "a\\b", "é", "a\x7fb", "x=y z"])
def test_baggage_bad_value_skipped(value: str) -> None:
    assert parse_baggage([f"k={value},ok=1"]) == (BaggageMember("ok", "1"),)


def test_baggage_value_may_contain_equals() -> None:
    assert parse_baggage(["k=a=b"]) == (BaggageMember("k", "a=b"),)


def test_baggage_properties_verbatim() -> None:
    header = "k=v;p1=x;flag;p2 = %41"
    (member,) = parse_baggage([header])
    assert member == BaggageMember("k", "v", "p1=x;flag;p2 = %41")
    assert format_baggage([member]) == header


@pytest.mark.parametrize("props", ["", ";", "p=a b", "(x)", "p=x;", "p=\\"])
def test_baggage_bad_properties_skip_member(props: str) -> None:
    assert parse_baggage([f"k=v;{props}", "ok=1"]) == (BaggageMember("ok", "1"),)


def test_format_baggage_encoding() -> None:
    value = 'a b,c;d%e"f\\g+h=i/j\u00e9\u2713'
    text = format_baggage([BaggageMember("k", value)])
    assert text == "k=a%20b%2Cc%3Bd%25e%22f%5Cg+h=i/j%C3%A9%E2%9C%93"
    safe = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\%')
    assert format_baggage([BaggageMember("k", safe)]) == f"k={safe}"
    assert parse_baggage([text]) == (BaggageMember("k", value),)


def test_format_baggage_lone_surrogate() -> None:
    assert format_baggage([BaggageMember("k", "a\ud800b")]) == "k=a%EF%BF%BDb"


def test_format_baggage_skips_invalid_members() -> None:
    members = [
        BaggageMember("bad key", "v"),
        BaggageMember("k", "v", "bad prop"),
        BaggageMember("ok", "1"),
    ]
    assert format_baggage(members) == "ok=1"
    assert format_baggage([]) == ""


def test_baggage_member_limit() -> None:
    members = [BaggageMember(f"k{i}", "v") for i in range(65)]
    assert len(parse_baggage([format_baggage(members[:64])])) == 64
    assert parse_baggage([format_baggage(members)]) == tuple(members[:64])


def test_baggage_byte_limit_drops_whole_members_from_end() -> None:
    # "k0=" + 1018 bytes, then 7 x ",kN=" + 1020 bytes: 1021 + 7 * 1024 = 8189 bytes.
    first = BaggageMember("k0", "x" * 1018)
    rest = [BaggageMember(f"k{i}", "x" * 1020) for i in range(1, 8)]
    text = format_baggage([first, *rest])
    assert len(text.encode()) == 8189
    assert len(parse_baggage([text])) == 8
    fits = format_baggage([first, *rest, BaggageMember("z", "")])
    assert len(fits) == 8192 and fits.endswith(",z=")
    assert format_baggage([first, *rest, BaggageMember("z", "1")]) == text
    assert format_baggage([first, *rest, BaggageMember("z", "\u00e9")]) == text  # 8 bytes
    big_middle = [BaggageMember("a", "1"), BaggageMember("b", "x" * 9000), BaggageMember("c", "3")]
    assert format_baggage(big_middle) == "a=1"


def test_baggage_limits_are_parameters() -> None:
    members = [BaggageMember(f"k{i}", "v") for i in range(5)]
    assert format_baggage(members, max_members=2) == "k0=v,k1=v"
    assert format_baggage(members, max_bytes=9) == "k0=v,k1=v"
    assert format_baggage(members, max_bytes=3) == ""


def test_baggage_huge_input_bounded_and_whole_members() -> None:
    cap = w3c._BAGGAGE_MAX_LEN
    got = bounded(parse_baggage, ["k=vvvvvvvv," * (MB // 11)], cap)
    assert isinstance(got, tuple)
    assert 0 < len(got) <= 2 * w3c.MAX_BAGGAGE_BYTES
    assert all(m == BaggageMember("k", "vvvvvvvv") for m in got)
    assert bounded(parse_baggage, ["k=" + "v" * MB], cap) == ()
    many = bounded(parse_baggage, ["a=1"] * MB, cap)
    assert isinstance(many, tuple) and 0 < len(many) < MB


def test_extract_inject_round_trip_baggage() -> None:
    members = (BaggageMember("user", "alice smith"), BaggageMember("tag", "x", "ttl=10"))
    ctx = TraceContext(new_traceparent(), baggage=members)
    sent = collect(ctx)
    assert extract(sent).baggage == members


# --------------------------------------------------------------------------- properties

_tokens = st.from_regex(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}", fullmatch=True)
_members = st.builds(BaggageMember, key=_tokens, value=st.text(max_size=30))


@given(st.lists(_members, max_size=20))
def test_prop_baggage_round_trip(members: list[BaggageMember]) -> None:
    assert parse_baggage([format_baggage(members)]) == tuple(members)


@given(st.text())
def test_prop_baggage_value_round_trip(value: str) -> None:
    text = format_baggage([BaggageMember("k", value)])
    assert parse_baggage([text]) == (BaggageMember("k", value),)


_ts_keys = st.from_regex(r"[a-z0-9][a-z0-9_*/@-]{0,20}", fullmatch=True)
_ts_values = st.from_regex(r"[ -+\--<>-~]{0,20}[!-+\--<>-~]", fullmatch=True)


@given(st.lists(st.tuples(_ts_keys, _ts_values), max_size=32))
def test_prop_tracestate_round_trip(entries: list[tuple[str, str]]) -> None:
    assert parse_tracestate([format_tracestate(entries)]) == tuple(entries)


@settings(max_examples=300)
@given(st.lists(st.text(), max_size=4))
def test_prop_parsers_never_raise(values: list[str]) -> None:
    parse_traceparent(values)
    parse_tracestate(values)
    parse_baggage(values)


@given(st.lists(st.tuples(st.sampled_from(["traceparent", "TraceState", "baggage"]), st.text())))
def test_prop_extract_inject_never_raise(headers: list[tuple[str, str]]) -> None:
    ctx = extract(headers)
    sent = collect(ctx)
    assert [n for n, _ in sent].count("traceparent") == 1


def test_has_trace_reads_the_atoms() -> None:
    """has_trace: a TraceContextBag with a trace; not one with W3C members only, nor none."""
    from ctxplane.baggage import Baggage
    from ctxplane.wire import tracecontext as tc

    empty = Baggage.empty()
    traced = tc.inbound_ids(empty, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    members_only = Baggage.of(
        tc.TraceContextBag(members={"tenant": tc.encode_member(w3c.BaggageMember("tenant", "a"))})
    )
    assert not tc.has_trace(empty)
    assert tc.has_trace(traced)
    assert tc.has_trace(Baggage.from_bytes(traced.to_bytes()))
    assert members_only.get(tc.TraceContextBag) is not None
    assert not tc.has_trace(members_only)
    both = tc.inbound_ids(members_only, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    assert tc.has_trace(both) and both.get(tc.TraceContextBag).members
