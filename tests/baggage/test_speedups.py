"""The compiled codec (``ctxplane._speedups``) against the pure-Python reference, on random
input: same results, same exceptions (type and message), malformed input included."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxplane import _native
from ctxplane.baggage import atoms, lexvarint

native = _native.compiled()
pytestmark = pytest.mark.skipif(native is None, reason="ctxplane._speedups is not built")

atom = st.binary(max_size=12) | st.binary(min_size=120, max_size=300)
atom_lists = st.lists(atom, max_size=25)
sorted_lists = atom_lists.map(lambda x: tuple(sorted(set(x))))


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as e:
        return ("raised", type(e), str(e))


def same(name: str, *args: Any, **kwargs: Any) -> Any:
    mod = atoms if name in atoms.PURE else lexvarint
    want = outcome(mod.PURE[name], *args, **kwargs)
    got = outcome(getattr(native, name), *args, **kwargs)
    assert got == want
    return got


@given(st.lists(sorted_lists | atom_lists, min_size=2, max_size=14))
def test_merge_matches_the_reference(lists: list[tuple[bytes, ...]]) -> None:
    # sorted inputs (the normal case) and unsorted ones (repeats, as the spec intends)
    same("merge", *lists)
    same("merge", lists[0], lists[1])
    same("merge", list(lists[0]), lists[1], [])


def test_merge_identity_and_odd_shapes() -> None:
    a = (b"\x01", b"\x02")
    assert native.merge(a, a) is a
    assert native.merge(a, ()) is a
    assert native.merge((), (), a) is a
    assert native.merge([b"\x01"], (b"\x02",), [b"\x00"]) == (b"\x00", b"\x01", b"\x02")
    # shapes the C code hands to the reference: iterators, non-bytes atoms, missing arguments
    same("merge", (b"a", "b"), (b"a", b"c"))
    same("merge", (b"a",), (b"b",), (1, 2), (b"c",))
    same("merge", (bytearray(b"a"),), (b"b",))
    same("merge", {b"a"}, (b"b",))  # not a sequence: the reference raises TypeError
    same("merge", (b"a",))


@given(atom_lists)
def test_serialize_round_trip_matches(atom_list: list[bytes]) -> None:
    data = same("serialize", atom_list)[1]
    assert same("serialize", tuple(atom_list))[1] == data
    assert native.serialize(iter(atom_list)) == data
    assert same("deserialize", data)[1] == tuple(atom_list)
    assert same("deserialize", bytearray(data), strict=True)[1] == tuple(atom_list)


@given(st.binary(max_size=60), st.booleans())
def test_deserialize_of_any_bytes_matches(data: bytes, strict: bool) -> None:
    same("deserialize", data, strict=strict)
    same("deserialize", memoryview(data), strict=strict)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80", b"\xff\xff\xff\xff\x07", b"\x80\x80\x80\x80\x10", b"\xff" * 10 + b"\x01",
        b"\x01\xaa\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01xyz", b"\x02\x01",
        b"\x05", b"\x01\x01\xff",
    ],
)
def test_malformed_framing_matches(data: bytes) -> None:
    assert same("deserialize", data)[0] == "ok"
    assert same("deserialize", data, strict=True)[0] == "raised"


def test_deserialize_odd_arguments_match() -> None:
    same("deserialize", "text")
    same("deserialize", b"\x01a", True)
    same("deserialize", b"\x01a", strict=None)
    same("deserialize", b"\x01a", other=1)
    same("serialize", [b"a", "b"])
    same("serialize", [b"a", bytearray(b"b")])
    same("serialize", 5)


ints = (
    st.integers(min_value=-(2**64), max_value=2**65)
    | st.sampled_from([0, 127, 128, 2**56 - 1, 2**56, 2**63 - 1, -(2**63), 2**64 - 1, 2**64])
)


@given(ints)
def test_lexvarint_encoders_match(value: int) -> None:
    for name in ("encode_unsigned", "encode_unsigned_reverse", "encode_signed",
                 "encode_signed_reverse"):  # fmt: skip
        same(name, value)


@given(st.binary(max_size=11), st.integers(min_value=-12, max_value=12))
def test_lexvarint_decoders_match(data: bytes, offset: int) -> None:
    for name in ("decode_unsigned", "decode_unsigned_reverse", "decode_signed",
                 "decode_signed_reverse"):  # fmt: skip
        same(name, data)
        same(name, data, offset)
        same(name, bytearray(data), offset)


@settings(max_examples=50)
@given(ints)
def test_lexvarint_round_trips(value: int) -> None:
    if 0 <= value < 2**64:
        assert native.decode_unsigned(native.encode_unsigned(value)) == (
            value, len(native.encode_unsigned(value)))  # fmt: skip
    if -(2**63) <= value < 2**63:
        data = native.encode_signed_reverse(value)
        assert native.decode_signed_reverse(data) == (value, len(data))


def test_lexvarint_odd_arguments_match() -> None:
    for name in lexvarint.__all__:
        arg: Any = b"\x01" if name.startswith("decode") else 1
        same(name, arg, 0, 0)
        same(name)
        same(name, 1.5)
        same(name, "x")
        same(name, True)
    same("decode_unsigned", b"\x81\x01", 2**70)
    same("decode_unsigned", b"\x81\x01", offset=0)


def test_pure_python_can_be_forced() -> None:
    code = (
        "import ctxplane, ctxplane.baggage.atoms as a;"
        "print(ctxplane.speedups_active(), a.merge is a.PURE['merge'])"
    )
    env = {**os.environ, "CTXPLANE_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True"], out.stderr
    env["CTXPLANE_PURE_PYTHON"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False"], out.stderr


_headerish = st.binary(min_size=1, max_size=11).map(lambda b: bytes([0x80 | b[0]]) + b[1:])


@given(st.lists(_headerish | atom, max_size=12))
def test_check_atoms_matches_the_reference(atom_list: list[bytes]) -> None:
    # every prefix byte, indexed headers of every length: the same verdict, word for word
    from ctxplane.wire import limits

    want = outcome(limits.PURE["check_atoms"], tuple(atom_list))
    assert outcome(native.check_atoms, tuple(atom_list)) == want
    assert outcome(native.check_atoms, atom_list) == want  # (a list: the reference's path)


def test_check_atoms_edges() -> None:
    from ctxplane.wire import limits

    cases: list[Any] = [
        (), (b"",), (b"\x00",), (b"\x01",), (b"\x7f",), (b"\x82",), (b"\xf8",), (b"\xf8\x07",),
        (b"\xf8\xff",), (b"\xf8\xff" + b"\x00" * 8,), (b"\xf8\xfe\x01",), (b"\xfc",),
        (b"\x00", "not bytes"), (bytearray(b"\xf8"),),
    ]  # fmt: skip
    for case in cases:
        assert outcome(native.check_atoms, case) == outcome(limits.PURE["check_atoms"], case)
