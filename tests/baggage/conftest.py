"""Shared helpers of the baggage-core tests: golden vectors, hex, and the vectors' value format.

Test modules get everything here through fixtures and one marker:

* ``@pytest.mark.vectors("file.json", op="merge2")`` on a test that takes a ``case`` argument
  parametrizes it with every case of ``tests/vectors/file.json`` (optionally only one ``op``).
* the session fixture ``tp`` is :data:`HELPERS` (hex conversion, vector loading, and the
  converter between the vectors' JSON value format and ctxplane values);
* the session fixture ``bb`` holds the classes compiled from ``tests/bb/*.bb``, registered at
  the indices the vectors use (1 SimpleBag, 2 SimpleBag2, 3 ExampleBag, 4 FonsecaBag,
  7 XTraceBaggage).

Vectors are read from ``tests/vectors`` next to this package, never from ``../shared``.
"""

from __future__ import annotations

import functools
import json
import math
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ctxplane.baggage import (
    COUNTER,
    TAINT,
    Bag,
    Baggage,
    Counter,
    FrozenMap,
    Struct,
    atoms,
    bdl,
)
from ctxplane.baggage.fields import FieldType, MapType, PrimitiveType, SetType
from ctxplane.baggage.protocol import BagKey

TESTS_DIR = Path(__file__).resolve().parent.parent
VECTOR_DIR = TESTS_DIR / "vectors"
BB_DIR = TESTS_DIR / "bb"

REGISTRY = {
    "SimpleBag": 1,
    "SimpleBag2": 2,
    "ExampleBag": 3,
    "FonsecaBag": 4,
    "XTraceBaggage": 7,
}


# -- vectors and hex ------------------------------------------------------------------------


@functools.cache
def load_vectors(name: str) -> dict[str, Any]:
    """One golden-vector file, parsed (cached; treat as read-only)."""
    with (VECTOR_DIR / name).open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def vector_cases(name: str, op: str | None = None) -> list[dict[str, Any]]:
    """The cases of a vector file, optionally only those with ``op``."""
    cases = load_vectors(name)["cases"]
    return [c for c in cases if op is None or c.get("op") == op]


def vector_files() -> list[str]:
    return sorted(p.name for p in VECTOR_DIR.glob("*.json"))


def h(text: str | None) -> bytes | None:
    """Hex to bytes (None stays None)."""
    return None if text is None else bytes.fromhex(text)


def hx(data: bytes | None) -> str | None:
    """Bytes to lowercase hex (None stays None)."""
    return None if data is None else bytes(data).hex()


def atoms_of(hexes: Sequence[str] | None) -> tuple[bytes, ...]:
    """An atom list in hex (``null`` = no atoms) to a tuple of bytes."""
    return () if hexes is None else tuple(bytes.fromhex(x) for x in hexes)


def hexes_of(atom_list: Iterable[bytes]) -> list[str]:
    return [bytes(a).hex() for a in atom_list]


def bag_key(key: Mapping[str, Any]) -> BagKey:
    """A vector key object (``{"type": "indexed"|"keyed", ...}``) to a :class:`BagKey`."""
    take_first = key["merge"] == "TakeFirst"
    if key["type"] == "indexed":
        return BagKey.indexed(key["index"], take_first)
    return BagKey.keyed(bytes.fromhex(key["key_hex"]), take_first)


def key_json(key: BagKey) -> dict[str, Any]:
    merge = "TakeFirst" if key.take_first else "TakeAll"
    if key.key is None:
        return {"type": "indexed", "index": key.index, "merge": merge}
    return {"type": "keyed", "key_hex": key.key.hex(), "merge": merge}


# -- the vectors' value format <-> ctxplane values ------------------------------------------


def _kind(ftype: FieldType[Any]) -> str:
    if ftype is COUNTER:
        return "counter"
    if ftype is TAINT:
        return "taint"
    if isinstance(ftype, SetType):
        return "set"
    if isinstance(ftype, MapType):
        return "map"
    if isinstance(ftype, PrimitiveType):
        return "primitive"
    cls = getattr(ftype, "cls", None)
    if isinstance(cls, type) and issubclass(cls, Struct):
        return "struct"
    if isinstance(cls, type) and issubclass(cls, Bag):
        return "bag"
    raise TypeError(f"unknown field type {ftype!r}")


def counter_from_json(value: Mapping[str, Any] | None) -> Counter:
    if value is None:
        return Counter()
    comps: dict[bytes, int] = {}
    for comp in value["components"]:
        assert comp["key"]["type"] == "keyed", "ctxplane counter components are keyed"
        comps[bytes.fromhex(comp["key"]["key_hex"])] = comp["value"]
    return Counter(comps)


def counter_to_json(value: Counter) -> dict[str, Any] | None:
    if not value.components:
        return None
    comps = [
        {"key": key_json(BagKey.keyed(k)), "value": v}
        for k, v in sorted(value.components.items())
    ]
    return {"value": int(value), "components": comps, "own_component": None}


def from_json(value: Any, ftype: FieldType[Any]) -> Any:
    """A value in the vectors' format to the ctxplane value of ``ftype`` (None: unset)."""
    kind = _kind(ftype)
    if kind == "counter":
        return counter_from_json(value)
    if kind == "taint":
        return bool(value)
    if value is None:
        return None
    if kind == "primitive":
        if ftype.name == "bytes":
            return bytes.fromhex(value)
        if ftype.name in ("float", "double"):
            return float(value)
        return value
    if kind == "set":
        assert isinstance(ftype, SetType)
        return frozenset(from_json(v, ftype.element) for v in value)
    if kind == "map":
        assert isinstance(ftype, MapType)
        return FrozenMap(
            (from_json(k, ftype.key), from_json(v, ftype.value)) for k, v in value.items()
        )
    cls: Any = ftype.cls  # type: ignore[attr-defined]
    if kind == "struct":
        return cls(**{name: from_json(value.get(name), t) for name, t in cls._members})
    return bag_from_json(value, cls)


def bag_from_json(value: Mapping[str, Any] | None, cls: type[Bag]) -> Any:
    """A bag in the vectors' format (field names plus ``_overflow``) to an instance of ``cls``.

    An ``_overflow`` flag cannot be built from values; tests take such bags from atoms.
    """
    if value is None:
        return cls()
    assert not value.get("_overflow"), "build overflowed bags from their atoms"
    known = {f.name for f in cls.fields()}
    unknown = set(value) - known - {"_overflow"}
    assert not unknown, f"{cls.__name__} has no fields {unknown}"
    kwargs = {}
    for f in cls.fields():
        v = from_json(value.get(f.name), f.type)
        if v is not None:
            kwargs[f.name] = v
    return cls(**kwargs)


def to_json(value: Any, ftype: FieldType[Any]) -> Any:
    """A ctxplane value of ``ftype`` in the vectors' format (empty collections as null)."""
    kind = _kind(ftype)
    if kind == "counter":
        return counter_to_json(value)
    if kind == "taint":
        return bool(value)
    if value is None:
        return None
    if kind == "primitive":
        if ftype.name == "bytes":
            return bytes(value).hex()
        return value
    if kind == "set":
        assert isinstance(ftype, SetType)
        if not value:
            return None
        return _sorted_json(to_json(v, ftype.element) for v in value)
    if kind == "map":
        assert isinstance(ftype, MapType)
        if not value:
            return None
        return {to_json(k, ftype.key): to_json(v, ftype.value) for k, v in value.items()}
    if kind == "struct":
        return {name: to_json(getattr(value, name), t) for name, t in type(value)._members}
    return bag_to_json(value)


def bag_to_json(bag: Bag | None) -> dict[str, Any] | None:
    """A bag in the vectors' format: every declared field by name, then ``_overflow``."""
    if bag is None:
        return None
    out = {f.name: to_json(getattr(bag, f.name), f.type) for f in type(bag).fields()}
    out["_overflow"] = bag.overflowed
    return out


def _sorted_json(items: Iterable[Any]) -> list[Any]:
    return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))


def normalize(value: Any, ftype: FieldType[Any]) -> Any:
    """The vectors' format made comparable: what ctxplane cannot tell apart compares equal.

    An absent counter, set or map (``null``) and an empty one are the same; an absent taint is
    False; set elements and counter components are sorted; a nested bag that is empty and not
    overflowed is the same as an absent one; ``own_component`` (the reference's per-object
    execution id) is dropped, since ctxplane takes it from the current execution.
    """
    kind = _kind(ftype)
    if kind == "taint":
        return bool(value)
    if kind == "counter":
        if not value or not value["components"]:
            return None
        comps = sorted((c["key"]["key_hex"], c["value"]) for c in value["components"])
        assert value["value"] == sum(v for _, v in comps)
        return {"value": value["value"], "components": comps}
    if value is None:
        return None
    if kind == "primitive":
        if ftype.name in ("float", "double") and isinstance(value, float) and math.isnan(value):
            return "NaN"
        return value
    if kind == "set":
        assert isinstance(ftype, SetType)
        return _sorted_json(normalize(v, ftype.element) for v in value) or None
    if kind == "map":
        assert isinstance(ftype, MapType)
        return {k: normalize(v, ftype.value) for k, v in value.items()} or None
    cls: Any = ftype.cls  # type: ignore[attr-defined]
    if kind == "struct":
        return {name: normalize(value.get(name), t) for name, t in cls._members}
    return normalize_bag(value, cls)


def normalize_bag(value: Mapping[str, Any] | None, cls: type[Bag]) -> dict[str, Any] | None:
    if value is None:
        return None
    out: dict[str, Any] = {f.name: normalize(value.get(f.name), f.type) for f in cls.fields()}
    overflow = bool(value.get("_overflow"))
    if not overflow and all(v is None or v is False for v in out.values()):
        return None
    out["_overflow"] = overflow
    return out


def same_bag(actual: Bag | None, expected: Mapping[str, Any] | None, cls: type[Bag]) -> bool:
    """Whether a ctxplane bag equals a bag of the vectors (after :func:`normalize`)."""
    return normalize_bag(bag_to_json(actual), cls) == normalize_bag(expected, cls)


def assert_bag(actual: Bag | None, expected: Mapping[str, Any] | None, cls: type[Bag]) -> None:
    got = normalize_bag(bag_to_json(actual), cls)
    want = normalize_bag(expected, cls)
    assert got == want, f"{cls.__name__}: got {got!r}, expected {want!r}"


# -- the .bb classes ------------------------------------------------------------------------


@functools.cache
def compiled() -> types.SimpleNamespace:
    """The classes of ``tests/bb/example.bb`` and ``xtrace.bb``, registered as the vectors
    register them (compiled once per session)."""
    example = (BB_DIR / "example.bb").read_text(encoding="utf-8")
    xtrace = (BB_DIR / "xtrace.bb").read_text(encoding="utf-8")
    ns = bdl.compile(example, {k: v for k, v in REGISTRY.items() if k != "XTraceBaggage"})
    xt = bdl.compile(xtrace, {"XTraceBaggage": REGISTRY["XTraceBaggage"]})
    out = types.SimpleNamespace(**vars(ns), **vars(xt))
    out.by_index = {index: getattr(out, name) for name, index in REGISTRY.items()}
    return out


def context_from_json(value: Mapping[str, Any] | None) -> Baggage:
    """A context in the vectors' format (``{"bags": {index: bag}}``) as a :class:`Baggage`."""
    classes = compiled().by_index
    b = Baggage.empty()
    for index, bag in sorted((value or {}).get("bags", {}).items(), key=lambda kv: int(kv[0])):
        b = b.with_bag(bag_from_json(bag, classes[int(index)]))
    return b


def reserialize(parsed: Baggage) -> tuple[bytes, ...]:
    """What the reference's context writer produces for a parsed context: each registered bag
    written again (an overflowed bag writes the marker right after its header), then the
    overflow path merged back in."""
    out = Baggage.empty()
    for cls in compiled().by_index.values():
        bag = parsed.get(cls)
        if bag is not None:
            out = out.with_bag(bag)
    return atoms.merge(out.atoms, parsed.overflow_path or ())


def unprocessed(parsed: Baggage) -> tuple[bytes, ...]:
    """The atoms left when every registered bag is taken out of a context (overflow markers
    aside: those are reported by the overflow path)."""
    rest = parsed
    for cls in compiled().by_index.values():
        if rest.get(cls) is not None:
            rest = rest.without(cls)
    return tuple(a for a in rest.atoms if a != atoms.OVERFLOW_MARKER)


HELPERS = types.SimpleNamespace(
    load_vectors=load_vectors,
    vector_cases=vector_cases,
    vector_files=vector_files,
    h=h,
    hx=hx,
    atoms_of=atoms_of,
    hexes_of=hexes_of,
    bag_key=bag_key,
    key_json=key_json,
    counter_from_json=counter_from_json,
    counter_to_json=counter_to_json,
    from_json=from_json,
    to_json=to_json,
    bag_from_json=bag_from_json,
    bag_to_json=bag_to_json,
    normalize=normalize,
    normalize_bag=normalize_bag,
    same_bag=same_bag,
    assert_bag=assert_bag,
    context_from_json=context_from_json,
    reserialize=reserialize,
    unprocessed=unprocessed,
    compiled=compiled,
    REGISTRY=REGISTRY,
    VECTOR_DIR=VECTOR_DIR,
    BB_DIR=BB_DIR,
)


# -- pytest wiring --------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "vectors(file, op=None): parametrize the test's `case` argument with golden vectors",
    )


def _case_id(i: int, case: Mapping[str, Any]) -> str:
    label = case.get("op") or case.get("decoder") or ""
    note = case.get("note")
    text = f"{i}-{label}" + (f"-{note}" if note else "")
    return "".join(ch if ch.isalnum() or ch in "-_+" else "_" for ch in text)[:60]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("vectors")
    if marker is None or "case" not in metafunc.fixturenames:
        return
    name = marker.args[0]
    op = marker.kwargs.get("op", marker.args[1] if len(marker.args) > 1 else None)
    cases = vector_cases(name, op)
    assert cases, f"no cases in {name} with op={op!r}"
    ids = [_case_id(i, c) for i, c in enumerate(cases)]
    metafunc.parametrize("case", cases, ids=ids)


@pytest.fixture(scope="session")
def tp() -> types.SimpleNamespace:
    """The shared helpers (see the module docstring)."""
    return HELPERS


@pytest.fixture(scope="session")
def bb() -> types.SimpleNamespace:
    """The compiled .bb classes, registered at the vectors' indices."""
    return compiled()


# -- the two implementations of the codec (pure Python, the reference; the compiled twin) ----

IMPLEMENTATIONS = ("pure", "compiled")


@pytest.fixture(params=IMPLEMENTATIONS)
def codec_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test against one implementation of the atom codec and the lexvarints: the
    functions of ``atoms`` / ``lexvarint`` and the test module's own imports of them are
    swapped for the pure-Python ones or the compiled ones (skipped when not built)."""
    from ctxplane import _native
    from ctxplane.baggage import atoms, lexvarint

    native = _native.compiled()
    if request.param == "compiled" and native is None:
        pytest.skip("ctxplane._speedups is not built")
    for mod in (atoms, lexvarint):
        for name, pure in mod.PURE.items():
            fn = pure if request.param == "pure" else getattr(native, name)
            monkeypatch.setattr(mod, name, fn)
            if name in vars(request.module):
                monkeypatch.setattr(request.module, name, fn)
    return str(request.param)
