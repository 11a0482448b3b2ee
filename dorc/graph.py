"""A layer's function graph: the run order and where a hand-over goes. Validation checks the
graph; the planner walks it. Both take it from here."""

from __future__ import annotations

from .models import Function, FunctionType


def chain(functions: list[Function]) -> list[Function]:
    """The run order: follow ``next_function`` from the one function nothing points to."""
    by_name = {f.name: f for f in functions}
    targets = {f.next.name for f in functions if f.next and f.next.type == FunctionType.Function.value}
    start = next(f for f in functions if f.name not in targets)
    order, cur, seen = [], start, set()
    while cur is not None and cur.name not in seen:
        order.append(cur)
        seen.add(cur.name)
        nxt = cur.next
        cur = by_name.get(nxt.name) if nxt and nxt.type == FunctionType.Function.value else None
    return order


def handover_key(instance: str, name: str) -> str:
    return name if "/" in name else f"{instance}/{name}"
