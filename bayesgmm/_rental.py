"""Ski rental between NumPy and a compiled program, over a process's calls.

Small problems cost milliseconds in NumPy, where compiling their program would cost seconds in a
fresh session; once compiled, the program runs them several times faster. Not knowing how often
a caller will come back, a ``Rental`` keeps each kind of problem (``key``: its shapes and static
settings) in NumPy while the work done there for that key in this process, this call's included,
stays within a budget of about one compilation's worth; after that the key compiles. A session
so never spends much more than twice what the cheaper way would have cost, whether it meets the
problem once or a thousand times (the break-even rule of the ski-rental problem).

Users: ``select``'s grids (``em._fit.GRID_HOST_MAX_WORK``) and the hierarchical start's merge
trees (``em._hierarchical.HOST_MAX_WORK``). Work is in each user's own unit; the budget is
passed at each call, so that a module constant read then (and patched by tests) decides.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class Rental:
    """The work each key has done on the host in this process (thread-safe)."""

    def __init__(self) -> None:
        self._work: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def on_host(self, key: Hashable, work: float, budget: float) -> bool:
        """Whether a call of ``work`` for ``key`` runs in NumPy: its key's work there, this call's
        included, stays within ``budget`` (then counted); else the call compiles (and is not counted)."""
        with self._lock:
            done = self._work.get(key, 0.0) + work
            if done > budget:
                return False
            self._work[key] = done
            return True

    def total(self) -> float:
        """The work done on the host over every key (a benchmark tells the drivers apart by it)."""
        with self._lock:
            return sum(self._work.values())

    def clear(self) -> None:
        """Forget the work done (a fresh session: tests start so)."""
        with self._lock:
            self._work.clear()
