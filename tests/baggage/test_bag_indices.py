"""Two bag classes on one level-0 index would read and overwrite each other's atoms: the
second definition is refused at class definition, naming both; ctxplane's own indices are
reserved whatever the import order; the same class defined again (reload, recompile) is fine.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ctxplane.baggage import COUNTER, RESERVED_INDICES, Bag, bdl, field, registered_bags


class First(Bag, index=90101):
    n = field(1, COUNTER)


def test_a_second_class_on_a_taken_index_is_refused_naming_both() -> None:
    with pytest.raises(TypeError) as caught:

        class Second(Bag, index=90101):
            n = field(1, COUNTER)

    message = str(caught.value)
    assert "90101" in message
    assert f"{__name__}.First" in message
    assert "Second" in message
    assert registered_bags()[90101] is First  # the first keeps its index


def test_an_index_reserved_by_ctxplane_is_refused_before_its_owner_is_imported() -> None:
    code = (
        "import sys\n"
        "from ctxplane.baggage import Bag, field, STRING\n"
        "try:\n"
        "    class Mine(Bag, index=200):\n"
        "        s = field(1, STRING)\n"
        "except TypeError as e:\n"
        "    print(e)\n"
        "print('ctxplane.wire.tracecontext' in sys.modules)\n"
        "import ctxplane.wire.tracecontext as tc\n"
        "print(tc.TraceContextBag.bag_index)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    refused, imported_before, index = done.stdout.strip().splitlines()
    assert "reserved for ctxplane.wire.tracecontext.TraceContextBag" in refused
    assert "__main__.Mine" in refused
    assert imported_before == "False"
    assert index == "200"  # ctxplane's own bag still registers there


def test_reserved_indices_name_ctxplanes_own_bags() -> None:
    from ctxplane.wire.tracecontext import TraceContextBag

    assert registered_bags()[200] is TraceContextBag
    assert RESERVED_INDICES[200] == "ctxplane.wire.tracecontext.TraceContextBag"


def test_the_same_class_defined_again_replaces_itself(tmp_path: Path) -> None:
    source = tmp_path / "reloaded_bag_mod.py"
    source.write_text(
        "from ctxplane.baggage import COUNTER, Bag, field\n"
        "class Again(Bag, index=90102):\n"
        "    n = field(1, COUNTER)\n"
    )
    classes = []
    for _ in range(2):  # as importlib.reload does: the module's code runs again
        spec = importlib.util.spec_from_file_location("reloaded_bag_mod", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        classes.append(module.Again)
    assert classes[0] is not classes[1]
    assert registered_bags()[90102] is classes[1]


def test_a_bdl_source_compiled_twice_registers_again() -> None:
    source = "bag Twice { counter n = 1; }"
    one = bdl.compile(source, {"Twice": 90103})
    two = bdl.compile(source, {"Twice": 90103})
    assert registered_bags()[90103] is two.Twice is not one.Twice
    with pytest.raises(TypeError, match="Twice"):
        bdl.compile("bag Other { counter n = 1; }", {"Other": 90103})
