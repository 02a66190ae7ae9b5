"""The .bb compiler (spec section 6): the reference's files compile unchanged, names are kept as
written, and bad sources are rejected with the line and column of the problem."""

from __future__ import annotations

import pytest

from ctxplane.baggage import (
    COUNTER,
    FIXED64,
    STRING,
    TAINT,
    Bag,
    Baggage,
    Struct,
    bdl,
    registered_bags,
)
from ctxplane.baggage.bdl import BDLSyntaxError
from ctxplane.baggage.fields import MapType, SetType


def compile_bb(tp, name: str, indices=None):
    return bdl.compile((tp.BB_DIR / name).read_text(encoding="utf-8"), indices)


def fields_of(cls) -> list[tuple[str, int, str]]:
    return [(f.name, f.number, f.type.name) for f in cls.fields()]


# -- the reference's files --------------------------------------------------------------------


def test_xtrace_bb_compiles_unchanged(tp):
    ns = compile_bb(tp, "xtrace.bb")
    assert set(vars(ns)) == {"XTraceBaggage"}
    assert fields_of(ns.XTraceBaggage) == [("taskId", 1, "fixed64"),
                                           ("parentEventIds", 2, "set<fixed64>")]
    assert ns.XTraceBaggage.fields()[0].type is FIXED64
    x = ns.XTraceBaggage(taskId=5, parentEventIds={1, 2})
    assert x.taskId == 5 and x.parentEventIds == {1, 2}
    assert ns.XTraceBaggage.bag_index is None  # not registered unless asked


def test_example_bb_compiles_unchanged(tp):
    ns = compile_bb(tp, "example.bb")
    assert set(vars(ns)) == {"SimpleBag", "SimpleBag2", "SimpleStruct1", "SimpleStruct2",
                             "ExampleBag", "FonsecaBag"}
    assert fields_of(ns.SimpleBag) == [("ids", 1, "set<fixed64>")]
    assert fields_of(ns.SimpleBag2) == [("first_field", 1, "int32"), ("second_field", 2, "string")]
    assert fields_of(ns.FonsecaBag) == [
        ("publications_by_conference", 77, "map<string, set<string>>")]
    assert fields_of(ns.ExampleBag) == [
        ("boolfield", 0, "bool"), ("int32field", 1, "int32"), ("sint32field", 2, "sint32"),
        ("fixed32field", 3, "fixed32"), ("sfixed32field", 4, "sfixed32"),
        ("int64field", 5, "int64"), ("sint64field", 6, "sint64"),
        ("fixed64field", 7, "fixed64"), ("sfixed64field", 8, "sfixed64"),
        ("stringfield", 9, "string"), ("bytesfield", 10, "bytes"),
        ("int32set", 11, "set<int32>"), ("stringset", 12, "set<string>"),
        ("simple_bag", 15, "SimpleBag"),
        ("simple_bag_2", 16, "set<string>"),  # `Set<string>`: keywords in any case
        ("bag_map", 20, "map<string, SimpleBag2>"),  # `Map<...>`
        ("c", 23, "counter"), ("sampled", 30, "taint"),
        ("structfield", 33, "SimpleStruct1"), ("structsetfield", 34, "set<SimpleStruct1>"),
        ("countermap", 35, "map<string, counter>"),
    ]
    by_name = {f.name: f.type for f in ns.ExampleBag.fields()}
    assert by_name["c"] is COUNTER
    assert by_name["sampled"] is TAINT
    assert by_name["simple_bag"].cls is ns.SimpleBag
    assert by_name["structfield"].cls is ns.SimpleStruct1
    assert isinstance(by_name["bag_map"], MapType) and by_name["bag_map"].key is STRING
    assert by_name["bag_map"].value.cls is ns.SimpleBag2
    assert isinstance(by_name["structsetfield"], SetType)
    assert [n for n, _ in ns.SimpleStruct1._members] == ["integer_field", "string_field"]
    assert [n for n, _ in ns.SimpleStruct2._members] == ["integer_field", "nested_struct"]
    assert issubclass(ns.SimpleStruct2, Struct) and issubclass(ns.ExampleBag, Bag)
    s = ns.SimpleStruct2(integer_field=1, nested_struct=ns.SimpleStruct1(string_field="x"))
    assert s.nested_struct.string_field == "x" and s.nested_struct.integer_field == 0


def test_compile_registers_the_named_indices(tp, bb):
    ns = compile_bb(tp, "xtrace.bb", {"XTraceBaggage": 4242})
    assert ns.XTraceBaggage.bag_index == 4242
    assert registered_bags()[4242] is ns.XTraceBaggage
    data = Baggage.of(ns.XTraceBaggage(taskId=1)).to_bytes()
    # the level-0 indexed header f8, then 4242 = 0x1092 as an unsigned lexvarint (80|10 92)
    assert Baggage.from_bytes(data).atoms[0] == bytes.fromhex("f89092")
    assert Baggage.from_bytes(data).get(ns.XTraceBaggage).taskId == 1
    # the session's class registered at 7 is untouched
    assert bb.XTraceBaggage.bag_index == 7
    assert registered_bags()[7] is bb.XTraceBaggage
    with pytest.raises(KeyError):
        compile_bb(tp, "xtrace.bb", {"NoSuchBag": 9})


def test_compile_accepts_comments_imports_and_packages():
    ns = bdl.compile(
        """
        // a comment
        package a.b.c;
        import "other.bb";
        /* a block
           comment */
        bag B { fixed64 id = 1; /* inline */ set<string> tags = 2; // trailing
                map<bytes, counter> m = 3; B2 nested = 4; }
        bag B2 { taint t = 1; }
        """
    )
    assert fields_of(ns.B) == [("id", 1, "fixed64"), ("tags", 2, "set<string>"),
                               ("m", 3, "map<bytes, counter>"), ("nested", 4, "B2")]


def test_names_are_kept_as_written():
    ns = bdl.compile("bag CamelBag { int64 camelCase = 1; string snake_case_2 = 2; "
                     "bool ALLCAPS = 3; }")
    assert [f.name for f in ns.CamelBag.fields()] == ["camelCase", "snake_case_2", "ALLCAPS"]
    b = ns.CamelBag(camelCase=1, snake_case_2="x", ALLCAPS=True)
    assert b.camelCase == 1 and b.snake_case_2 == "x" and b.ALLCAPS is True


def test_forward_references_and_qualified_names():
    ns = bdl.compile("bag A { pkg.B b = 1; S s = 2; } bag B { int32 x = 1; } "
                     "struct S { B2S inner; } struct B2S { string v; }")
    assert ns.A.fields()[0].type.cls is ns.B
    assert ns.A.fields()[1].type.cls is ns.S


# -- errors name the line and the column ----------------------------------------------------


SYNTAX_ERRORS = [
    # (source, line, column, words in the message)
    ("bag A { int32 x = 1 }", 1, 21, "';'"),
    ("bag A {\n  int32 x;\n}", 2, 10, "'='"),
    ("bag A {\n  int32 x = 1;\n", 3, 1, "'}'"),
    ("bag A { int32 x = 1; }\n$", 2, 1, "unexpected character"),
    ("message A { }", 1, 1, "expected 'bag'"),
    ("bag { int32 x = 1; }", 1, 5, "bag name"),
    ("bag A {\n\tset<int32 x = 1;\n}", 2, 12, "'>'"),
    ("struct S {\n  int32 a = 1;\n}", 2, 11, "';'"),
    ("bag A { int32 x = y; }", 1, 19, "field number"),
    ("bag A { map<string> m = 1; }", 1, 19, "','"),
    ("bag A { int32 = 1; }", 1, 15, "field name"),
    ("bag A { int32 x = 4294967296; }", 1, 19, "2^32-1"),
    ("import other.bb;", 1, 8, "quoted file name"),
    ("bag a.b { }", 1, 5, "cannot contain '.'"),
    ("bag A { int32 x = 1; } bag A { int32 y = 1; }", 1, 24, "declared twice"),
]


@pytest.mark.parametrize(("source", "line", "column", "words"), SYNTAX_ERRORS)
def test_syntax_errors_name_line_and_column(source, line, column, words):
    with pytest.raises(BDLSyntaxError) as info:
        bdl.compile(source)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert str(err).startswith(f"line {line}, column {column}: ")
    assert words in str(err)
    assert isinstance(err, ValueError)


TYPE_ERRORS = [
    ("bag A {\n  Foo x = 1;\n}", 2, 3, "unknown type 'Foo'"),
    ("bag A { set<Unknown> s = 1; }", 1, 13, "unknown type"),
    ("bag A { int32 x = 1; string y = 1; }", 1, 29, "field number 1"),
    ("bag A { int32 x = 1; string x = 2; }", 1, 29, "declared twice"),
    ("bag A { B b = 1; }\nbag B { A a = 1; }", 2, 9, "contains itself"),
    ("bag A { A a = 1; }", 1, 9, "contains itself"),
    ("bag A { map<string, A> m = 1; }", 1, 21, "contains itself"),
    ("struct S { T t; }\nstruct T { S s; }", 2, 12, "contains itself"),
    ("bag A { set<counter> s = 1; }", 1, 13, "counter cannot be"),
    ("bag A { map<taint, int32> m = 1; }", 1, 13, "taint cannot be"),
    ("bag A { set<set<int32>> s = 1; }", 1, 13, "a set cannot be nested"),
    ("bag A { map<map<int32, int32>, int32> m = 1; }", 1, 13, "a map cannot be nested"),
    ("bag B { int32 x = 1; }\nstruct S { B b; }", 2, 12, "bag B cannot be"),
    ("struct S { counter c; }", 1, 12, "counter cannot be"),
    ("bag B { int32 x = 1; }\nbag A { set<B> s = 1; }", 2, 13, "bag B cannot be"),
    ("bag A { int32 atoms = 1; }", 1, 15, "reserved"),
    ("bag A { int32 join = 1; }", 1, 15, "reserved"),
    ("bag A { string _values = 1; }", 1, 16, "reserved"),
    ("struct S { int32 values; }", 1, 18, "reserved"),
]


@pytest.mark.parametrize(("source", "line", "column", "words"), TYPE_ERRORS)
def test_type_errors_are_rejected_with_line_and_column(source, line, column, words):
    with pytest.raises(BDLSyntaxError) as info:
        bdl.compile(source)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert words in str(err)


def test_failed_compile_registers_nothing():
    before = registered_bags()
    with pytest.raises(BDLSyntaxError):
        bdl.compile("bag Z { int32 x = 1; } bag Y { Nope n = 1; }", {"Z": 31337})
    assert registered_bags() == before


def test_empty_source_compiles_to_nothing():
    assert vars(bdl.compile("")) == {}
    assert vars(bdl.compile("// nothing\n/* at all */\npackage p;")) == {}
