"""Makes federax's immutable core objects picklable, so client functions (which hold their
types and values) and type arguments can travel to Ray workers.

Types, `fx.Value`s and datasets are immutable: their `__setattr__` refuses, and pickle's
default restores `__slots__` through it. Each such class gets a `copyreg` reducer that rebuilds
the object slot by slot (cloudpickle, which Ray uses, reads `copyreg`'s table). A `__reduce__`
in the core itself would do the same; this keeps the core untouched until that lands.
"""

from __future__ import annotations

import copyreg
import sys

from federax.core import types as t
from federax.core.structure import Struct
from federax.core.values import Value


def _slots(cls: type) -> tuple:
  return tuple(s for klass in reversed(cls.__mro__) for s in getattr(klass, "__slots__", ()))


def _rebuild(cls: type, values: tuple):
  obj = object.__new__(cls)
  for name, value in zip(_slots(cls), values):
    object.__setattr__(obj, name, value)
  return obj


def _reduce(obj):
  cls = type(obj)
  return _rebuild, (cls, tuple(getattr(obj, s) for s in _slots(cls)))


def _immutable_classes() -> list:
  """The slotted classes of loaded federax modules that refuse `__setattr__` (e.g.
  `fx.data.Dataset`, a client argument), found without importing their layers here."""
  found = []
  for name, module in list(sys.modules.items()):
    if module is None or not (name == "federax" or name.startswith("federax.")):
      continue
    for obj in list(vars(module).values()):
      if (isinstance(obj, type) and obj.__module__ == name and "__slots__" in obj.__dict__
          and "__setattr__" in obj.__dict__):
        found.append(obj)
  return found


def register() -> None:
  """Registers the reducer for every `Type` class, `Value`, `Struct` and the other immutable
  slotted classes of loaded federax modules (idempotent)."""
  pending = [t.Type, Value, Struct, *_immutable_classes()]
  while pending:
    cls = pending.pop()
    pending.extend(cls.__subclasses__())
    copyreg.pickle(cls, _reduce)
