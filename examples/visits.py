"""The bag the examples share: every unit of work counts itself once and adds its name."""

from ctxplane import COUNTER, STRING, Bag, field, set_of


class Visits(Bag, index=100):
    """A counter and a set of names, registered at level-0 index 100."""

    count = field(1, COUNTER)
    where = field(2, set_of(STRING))
