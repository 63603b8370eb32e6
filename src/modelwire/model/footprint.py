"""How much memory a loaded model takes: what the memory budget accounts it by (``core/budget.py``).

The measured size of a load is the growth of the model object's **deep size** across ``load()``: every
object reachable from the model (its ``__dict__``, the arrays, vocabularies and estimators ``load`` put
there), each counted once by ``sys.getsizeof`` (a numpy array that owns its data counts its buffer),
measured before and after the load; shared things (classes, modules, functions) are not walked. It
counts exactly what this model holds, whatever other models load or serve on other threads at the same
time, and the same artifact measures the same every time (docs/decisions.md says why not RSS or
tracemalloc). Memory a library keeps outside Python objects (an onnxruntime session's arena, a GPU) is
invisible to it: such a runtime reports its own size from ``Model.memory_bytes()``, which wins.
"""

from __future__ import annotations

import gc
import sys
import types
from typing import Any

__all__ = ["MAX_OBJECTS", "deep_size", "measured_size"]

MAX_OBJECTS = 5_000_000
"""A walk stops after this many objects (a model holding a whole framework's state still ends)."""

_SHARED = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)


def deep_size(root: Any) -> int:
    """Bytes of ``root`` and every object reachable from it, each once (classes, modules, functions and
    methods excluded: shared by every instance)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack and len(seen) < MAX_OBJECTS:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        try:
            total += sys.getsizeof(obj)
        except TypeError:  # an extension object without a size
            continue
        stack.extend(gc.get_referents(obj))
    return total


def measured_size(model: Any, before: int) -> int:
    """A loaded model's size: what ``model.memory_bytes()`` reports, else its deep size now minus
    ``before`` (its deep size before ``load``)."""
    reported = model.memory_bytes()
    if isinstance(reported, int) and not isinstance(reported, bool) and reported >= 0:
        return reported
    return max(deep_size(model) - before, 0)
