"""A compiler for ``.bb`` files (the Baggage Definition Language) into bag and struct classes.

.. code-block:: python

    ns = compile(open("xtrace.bb").read(), {"XTraceBaggage": 7})
    ns.XTraceBaggage(taskId=1, parentEventIds={2, 3})

The language: an optional ``package a.b.c;``, ``import "file";`` lines (accepted, ignored:
every name must be declared in the compiled source), and declarations
``bag Name { type name = number; ... }`` and ``struct Name { type name; ... }``. Types are the
BDL primitives (bool, int32, sint32, fixed32, sfixed32, int64, sint64, fixed64, sfixed64,
float, double, string, bytes), ``counter``, ``taint``, ``set<T>``, ``map<K, V>`` (keywords in
any case, as in the reference's examples) and the names of declared bags and structs.
Comments are ``//`` and ``/* */``. Field names are kept as written.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .bags import Bag, Field, Struct, _Member, register
from .fields import COUNTER, PRIMITIVES, TAINT, ElementType, FieldType, MapType, SetType

__all__ = ["BDLSyntaxError", "compile"]


class BDLSyntaxError(ValueError):
    """A ``.bb`` source that does not parse or type-check; names the line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"[^"\n]*")
  | (?P<number>\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[{}<>,;=])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    line: int
    col: int


def _tokenize(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    line = 1
    line_start = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise BDLSyntaxError(
                f"unexpected character {source[pos]!r}", line, pos - line_start + 1
            )
        kind = m.lastgroup or ""
        text = m.group()
        if kind not in ("ws", "comment"):
            out.append(_Tok(kind, text, line, pos - line_start + 1))
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = pos + text.rindex("\n") + 1
        pos = m.end()
    out.append(_Tok("eof", "", line, pos - line_start + 1))
    return out


@dataclass
class _TypeRef:
    kind: str  # primitive, counter, taint, set, map, named
    name: str
    args: tuple[_TypeRef, ...]
    tok: _Tok


@dataclass
class _Decl:
    kind: str  # bag or struct
    name: str
    members: list[tuple[_TypeRef, str, int | None, _Tok]]
    tok: _Tok


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg: str, tok: _Tok | None = None) -> BDLSyntaxError:
        t = tok or self.peek()
        found = "end of file" if t.kind == "eof" else repr(t.text)
        return BDLSyntaxError(f"{msg}, found {found}", t.line, t.col)

    def expect(self, text: str) -> _Tok:
        t = self.peek()
        if t.text != text or t.kind not in ("punct", "name"):
            raise self.error(f"expected {text!r}")
        return self.next()

    def name(self, what: str) -> _Tok:
        t = self.peek()
        if t.kind != "name":
            raise self.error(f"expected {what}")
        return self.next()

    def parse(self) -> list[_Decl]:
        decls: list[_Decl] = []
        while self.peek().kind != "eof":
            t = self.peek()
            word = t.text.lower() if t.kind == "name" else ""
            if word == "package":
                self.next()
                self.name("a package name")
                self.expect(";")
            elif word == "import":
                self.next()
                if self.peek().kind != "string":
                    raise self.error("expected a quoted file name")
                self.next()
                self.expect(";")
            elif word in ("bag", "struct"):
                decls.append(self.decl(word))
            else:
                raise self.error("expected 'bag', 'struct', 'package' or 'import'")
        return decls

    def decl(self, kind: str) -> _Decl:
        start = self.next()
        name = self.name(f"a {kind} name")
        if "." in name.text:
            raise self.error(f"a {kind} name cannot contain '.'", name)
        self.expect("{")
        members: list[tuple[_TypeRef, str, int | None, _Tok]] = []
        while self.peek().text != "}":
            if self.peek().kind == "eof":
                raise self.error("expected '}'")
            tref = self.type_ref()
            fname = self.name("a field name")
            number: int | None = None
            if kind == "bag":
                self.expect("=")
                nt = self.peek()
                if nt.kind != "number":
                    raise self.error("expected a field number")
                self.next()
                number = int(nt.text)
                if number > 0xFFFFFFFF:
                    raise BDLSyntaxError("field number exceeds 2^32-1", nt.line, nt.col)
            self.expect(";")
            members.append((tref, fname.text, number, fname))
        self.expect("}")
        return _Decl(kind, name.text, members, start)

    def type_ref(self) -> _TypeRef:
        t = self.name("a type")
        word = t.text.lower()
        if word == "set":
            self.expect("<")
            elem = self.type_ref()
            self.expect(">")
            return _TypeRef("set", "set", (elem,), t)
        if word == "map":
            self.expect("<")
            k = self.type_ref()
            self.expect(",")
            v = self.type_ref()
            self.expect(">")
            return _TypeRef("map", "map", (k, v), t)
        if t.text in PRIMITIVES:
            return _TypeRef("primitive", t.text, (), t)
        if t.text in ("counter", "taint"):
            return _TypeRef(t.text, t.text, (), t)
        return _TypeRef("named", t.text.rsplit(".", 1)[-1], (), t)


def compile(source: str, indices: Mapping[str, int] | None = None) -> types.SimpleNamespace:
    """Compile ``.bb`` source into a namespace of bag and struct classes.

    ``indices`` maps bag names to the level-0 indices they are registered at; bags not named
    there are compiled but not registered (they can still be nested or registered later).
    """
    decls = _Parser(_tokenize(source)).parse()
    by_name: dict[str, _Decl] = {}
    for d in decls:
        if d.name in by_name:
            raise BDLSyntaxError(f"{d.name} is declared twice", d.tok.line, d.tok.col)
        by_name[d.name] = d
    built: dict[str, type] = {}
    building: set[str] = set()

    def resolve(tref: _TypeRef, element: bool) -> FieldType[Any]:
        if tref.kind == "primitive":
            return PRIMITIVES[tref.name]
        if tref.kind in ("counter", "taint"):
            if element:
                raise BDLSyntaxError(
                    f"{tref.name} cannot be a set element, map key or struct member",
                    tref.tok.line, tref.tok.col,
                )
            return COUNTER if tref.kind == "counter" else TAINT
        if tref.kind == "set":
            if element:
                raise BDLSyntaxError("a set cannot be nested there", tref.tok.line, tref.tok.col)
            return SetType(_element(resolve(tref.args[0], True), tref.args[0]))
        if tref.kind == "map":
            if element:
                raise BDLSyntaxError("a map cannot be nested there", tref.tok.line, tref.tok.col)
            key = _element(resolve(tref.args[0], True), tref.args[0])
            return MapType(key, resolve(tref.args[1], False))
        cls = build(tref.name, tref.tok)
        if issubclass(cls, Struct):
            return cls.field_type()
        if element:
            raise BDLSyntaxError(
                f"bag {tref.name} cannot be a set element, map key or struct member",
                tref.tok.line, tref.tok.col,
            )
        assert issubclass(cls, Bag)
        return cls.field_type()

    def build(name: str, tok: _Tok) -> type:
        if name in built:
            return built[name]
        d = by_name.get(name)
        if d is None:
            raise BDLSyntaxError(f"unknown type {name!r}", tok.line, tok.col)
        if name in building:
            raise BDLSyntaxError(f"{name} contains itself", tok.line, tok.col)
        building.add(name)
        ns: dict[str, Any] = {"__module__": "ctxplane.bdl.generated", "__qualname__": name}
        seen_numbers: dict[int, str] = {}
        base: type = Struct if d.kind == "struct" else Bag
        for tref, fname, number, ftok in d.members:
            if fname in ns:
                raise BDLSyntaxError(f"field {fname!r} is declared twice", ftok.line, ftok.col)
            if fname.startswith("__") or hasattr(base, fname):
                # it would hide the generated class's own attribute (atoms, join, values, ...)
                raise BDLSyntaxError(
                    f"field name {fname!r} is reserved: {base.__name__}.{fname} exists",
                    ftok.line, ftok.col,
                )
            ftype = resolve(tref, d.kind == "struct")
            if d.kind == "struct":
                ns[fname] = _Member(_element(ftype, tref))
            else:
                assert number is not None
                if number in seen_numbers:
                    raise BDLSyntaxError(
                        f"field number {number} is used by {seen_numbers[number]!r} too",
                        ftok.line, ftok.col,
                    )
                seen_numbers[number] = fname
                ns[fname] = Field(number, ftype)
        cls = type(name, (base,), ns)
        building.discard(name)
        built[name] = cls
        return cls

    for d in decls:
        build(d.name, d.tok)
    for name, index in (indices or {}).items():
        cls = built.get(name)
        if cls is None or not issubclass(cls, Bag):
            raise KeyError(f"no bag named {name!r} in the source")
        register(cls, index)
    return types.SimpleNamespace(**built)


def _element(t: FieldType[Any], tref: _TypeRef) -> ElementType[Any]:
    if not isinstance(t, ElementType):
        raise BDLSyntaxError(f"{t.name} cannot be used there", tref.tok.line, tref.tok.col)
    return t
