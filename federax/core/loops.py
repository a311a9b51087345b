"""`for x in sequence:` in a compiled local computation, run as `Sequence.reduce` (autograph-lite).

TFF users write a client's training as a Python loop over its dataset; TFF's autograph turns the
loop into a `tf.data` reduce. On the vectorized runtime a local computation's sequence is padded
and traced, so a Python loop cannot run over it. When a trace meets such a loop
(`SequenceIterationError`), `convert` rewrites the user's function from its source:

    for TARGET in ITER:            _fx_out = for_stmt(ITER, body, ('a', 'b'), ...)
      BODY                  ->     if _fx_out is None:      # not a padded sequence: as written
                                     for TARGET in ITER: BODY
                                   else:
                                     a, b = _fx_out         # ITER.reduce((a, b), body), compiled

where `body(state, element)` runs BODY once, and `a, b` (the loop state) are the names BODY
assigns and reads before assigning them (from the pass before) or that are read after the loop:
bound before it, pytrees of arrays (a Python number becomes an array of its type, as
`tf.function` makes it a tensor). Calls in converted code to the user's own Python
functions are converted too (autograph's `converted_call`), once per function. A loop that cannot
be compiled (`break`, `continue`, `return`, `else`, state that is not arrays, a name first bound
in the loop and read after it, ...) is left as written, and the runtime runs the call on the
sequential runtime as before, its warning saying why.
"""

from __future__ import annotations

import __future__
import ast
import builtins
import contextvars
import copy
import inspect
import os
import sys
import textwrap
import types
import weakref
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from federax.core.errors import _is_library_frame, failing_line
from federax.core.rows import PaddedTensor
from federax.core.sequences import Sequence, SequenceIterationError

_HELPER = "_fx_loops"  # The name converted code calls this module by.
_FUTURE_FLAGS = sum(getattr(__future__, f).compiler_flag for f in __future__.all_feature_names)
# Errors a compiled loop can cause where the original code, run in Python, would not (its
# Python numbers are arrays after it: `range(n)`, `if n:`, `f"{n:d}"`; JAX's tracer errors are
# TypeErrors too). Where the original raises them too, it does so on the sequential runtime.
_TRACE_ERRORS = (TypeError, NameError, jax.errors.NonConcreteBooleanIndexError)

_codes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Code -> converted code or None.
_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Function -> converted.
_compiled_loops: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar(
    "federax_compiled_loops", default=None)


# --- Run time: what converted code calls ----------------------------------------------------------


def convert(fn: Callable) -> Optional[Callable]:
  """`fn` with its `for` loops over sequences compiled; None when it cannot be converted (no
  Python source, library code, a generator, a method using `super()`)."""
  new = converted(fn)
  return None if new is fn else new


def converted(fn: Any) -> Any:
  """What converted code calls instead of `fn`: the user's Python function converted, anything
  else (library code, builtins, classes, callable objects) unchanged."""
  if isinstance(fn, types.MethodType) and type(fn.__func__) is types.FunctionType:
    new = converted(fn.__func__)
    return fn if new is fn.__func__ else types.MethodType(new, fn.__self__)
  if type(fn) is not types.FunctionType or _HELPER in fn.__code__.co_freevars:
    return fn  # Not a Python function, or one defined in converted code (converted already).
  code = fn.__code__
  if code not in _codes:
    try:
      _codes[code] = _convert_code(fn)
    except Exception:  # Source this conversion does not foresee: the function runs as written.
      _codes[code] = None
  if _codes[code] is None:
    return fn
  if fn not in _functions:
    _functions[fn] = _rebuild(fn, _codes[code])
  return _functions[fn]


def run_converted(call: Callable[[], Any]) -> Any:
  """`call()` of a converted function; where a loop of it ran compiled, an error the compiled
  loop may cause (a Python `if` on a traced value after it, say) becomes a
  `SequenceIterationError`: the runtime then runs the call in Python, exactly as written."""
  compiled: list = []
  token = _compiled_loops.set(compiled)
  try:
    return call()
  except SequenceIterationError:
    raise
  except _TRACE_ERRORS as e:
    if not compiled:
      raise
    message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    raise _not_compiled(f"with the loop at {compiled[0]} compiled, the code fails ({message})",
                        failing_line(e)) from e
  finally:
    _compiled_loops.reset(token)


def for_stmt(iterable: Any, body: Callable, names: tuple, where: str,
             iter_fn: Any = None) -> Optional[tuple]:
  """A converted `for` loop: None when `iterable` is not a padded sequence (the caller then
  runs the loop as written); else the new values of `names` (the loop state, read from the
  caller's frame) after `iterable.reduce(state, body)`.

  `iter_fn` is the function the loop applied to the iterable (`for x in iter(ds)`), if any.
  """
  if iter_fn is not None and iter_fn is not builtins.iter:
    return None
  if not isinstance(iterable, Sequence) or isinstance(iterable.payload, list):
    return None
  scope = sys._getframe(1).f_locals
  unbound = [n for n in names if n not in scope]
  if unbound:
    raise _not_compiled(f"`{unbound[0]}` is assigned in the loop but not bound before it")
  state = tuple(_as_arrays(n, scope[n]) for n in names)
  leaves, treedef = jax.tree_util.tree_flatten(state)

  def step(flat, element):
    try:
      out = body(jax.tree_util.tree_unflatten(treedef, flat), element)
    except NameError as e:  # A name the body reads before assigning it: bound in a former pass.
      raise _not_compiled(f"{e}") from e
    out = tuple(_unchanged(name, old, new) for name, old, new in zip(names, state, out))
    return tuple(jax.tree_util.tree_leaves(out))

  recorded = _compiled_loops.get()
  if recorded is not None:
    recorded.append(where)
  return jax.tree_util.tree_unflatten(treedef, list(iterable.reduce(tuple(leaves), step)))


def not_converted(iterable: Any, why: str) -> Any:
  """A loop left as written: `iterable` itself; for a padded sequence, the error that makes the
  runtime run the call in Python, saying why the loop was not compiled."""
  if isinstance(iterable, Sequence) and not isinstance(iterable.payload, list):
    raise _not_compiled(why)
  return iterable


def _not_compiled(why: str, location: Optional[str] = None) -> SequenceIterationError:
  e = SequenceIterationError(
      "Sequence", f"a `for` loop over a sequence cannot run compiled: {why}.",
      hint="see docs/porting_from_tff.md (loops over a sequence) for the loops that compile, or "
      "fold it with reduce(initial_state, reduce_func)", location=location)
  e.reason = why
  return e


def _as_arrays(name: str, value: Any) -> Any:
  """The loop state `value` with its leaves as JAX arrays (a Python number of its type)."""
  bad = _non_array(value)
  if bad is not None:
    raise _not_compiled(f"`{name}` holds a {bad}, not arrays")
  return jax.tree_util.tree_map(jnp.asarray, value)


def _non_array(value: Any) -> Optional[str]:
  """The type name of a leaf of `value` that is not an array or a number; None if none."""
  for x in jax.tree_util.tree_leaves(value, is_leaf=lambda x: isinstance(x, PaddedTensor)):
    if not isinstance(x, jax.Array) and not (
        isinstance(x, (np.ndarray, np.generic, bool, int, float, complex))
        and np.asarray(x).dtype.kind not in "OSUV"):
      return type(x).__name__
  return None


def _unchanged(name: str, old: Any, new: Any) -> Any:
  """`new` as arrays; raises where a pass of the body changed the type of `name` (a compiled
  loop's state keeps its type, as `tf.while_loop`'s does)."""
  bad = _non_array(new)
  if bad is not None:
    raise _not_compiled(f"the loop makes `{name}` a {bad}")
  new = jax.tree_util.tree_map(jnp.asarray, new)
  old_leaves, old_tree = jax.tree_util.tree_flatten(old)
  new_leaves, new_tree = jax.tree_util.tree_flatten(new)
  if new_tree != old_tree:
    raise _not_compiled(f"the loop changes the structure of `{name}` from {old_tree} to "
                        f"{new_tree}")
  for a, b in zip(old_leaves, new_leaves):
    if (a.shape, a.dtype) != (b.shape, b.dtype):
      raise _not_compiled(f"the loop changes `{name}` from {a.dtype}{list(a.shape)} to "
                          f"{b.dtype}{list(b.shape)}")
  return new


# --- Conversion: the function's source, rewritten ------------------------------------------------


def _is_library(fn: types.FunctionType) -> bool:
  filename = fn.__code__.co_filename
  return (_is_library_frame(filename)
          or any(d in filename.split(os.sep) for d in ("site-packages", "dist-packages")))


def _convert_code(fn: types.FunctionType) -> Optional[types.CodeType]:
  """The code of `fn` with its loops and calls converted; None where it cannot be."""
  code = fn.__code__
  if (_is_library(fn) or code.co_name == "<lambda>" or "__class__" in code.co_freevars
      or code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE
                          | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE)):
    return None
  try:
    source = inspect.getsource(code)  # Not `fn`: that would follow `__wrapped__`.
  except (OSError, TypeError):
    return None
  dedented = textwrap.dedent(source)
  indent = len(source.splitlines()[0]) - len(dedented.splitlines()[0])
  try:
    tree = ast.parse(dedented)
  except SyntaxError:
    return None
  func = tree.body[0] if tree.body else None
  if not isinstance(func, ast.FunctionDef) or func.name != code.co_name or any(
      isinstance(n, ast.Name) and n.id.startswith(("_fx_", "__")) and not n.id.endswith("__")
      or isinstance(n, ast.Attribute) and n.attr.startswith("__") and not n.attr.endswith("__")
      for n in ast.walk(func)):  # Private names a class body would have mangled; our names.
    return None
  ast.increment_lineno(tree, code.co_firstlineno - 1)
  for node in ast.walk(tree):
    if getattr(node, "col_offset", None) is not None:
      node.col_offset += indent
      node.end_col_offset = (node.end_col_offset or 0) + indent
  func.decorator_list = []
  plans = {id(loop): _plan(loop, f) for f in ast.walk(func)
           if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
           for loop in _scope(f.body) if isinstance(loop, ast.For)}
  func = _Converter(plans, code.co_filename).visit(func)
  factory = ast.FunctionDef(
      name="_fx_factory", args=ast.arguments(
          posonlyargs=[], args=[ast.arg(a) for a in (_HELPER, *code.co_freevars)],
          kwonlyargs=[], kw_defaults=[], defaults=[]),
      body=[func, ast.Return(ast.Name(func.name, ast.Load()))], decorator_list=[])
  module = ast.Module(body=[_located(factory, func)], type_ignores=[])
  try:
    compiled = compile(module, code.co_filename, "exec", dont_inherit=True,
                       flags=code.co_flags & _FUTURE_FLAGS)
  except (SyntaxError, ValueError):
    return None
  made = _inner_code(_inner_code(compiled, "_fx_factory"), code.co_name)
  if made is None or made.co_varnames[:code.co_argcount] != code.co_varnames[:code.co_argcount]:
    return None
  return made.replace(co_qualname=code.co_qualname)


def _inner_code(code: Optional[types.CodeType], name: str) -> Optional[types.CodeType]:
  return None if code is None else next(
      (c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == name), None)


def _rebuild(fn: types.FunctionType, code: types.CodeType) -> types.FunctionType:
  """A function of `code` with `fn`'s globals, closure cells, defaults and attributes."""
  cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
  cells[_HELPER] = types.CellType(sys.modules[__name__])
  new = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__,
                           tuple(cells[name] for name in code.co_freevars))
  new.__kwdefaults__ = fn.__kwdefaults__
  for attribute in ("__module__", "__qualname__", "__doc__", "__annotations__"):
    setattr(new, attribute, getattr(fn, attribute))
  new.__dict__.update(fn.__dict__)
  return new


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _scope(nodes: list, skip: Optional[ast.AST] = None):
  """The nodes of one function's scope: not inside nested functions, classes or lambdas (nor
  inside `skip`)."""
  stack = list(reversed(nodes))
  while stack:
    node = stack.pop()
    if node is skip:
      continue
    yield node
    if not isinstance(node, _SCOPES):
      stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _stores(nodes: list, skip: Optional[ast.AST] = None) -> dict:
  """The names the nodes bind in their scope, in order of first binding (name -> node)."""
  found: dict = {}
  in_comprehension = set()
  for node in _scope(nodes, skip):
    if isinstance(node, _COMPREHENSIONS):
      in_comprehension.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Name))
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      found.setdefault(node.name, node)
    elif isinstance(node, ast.NamedExpr):
      found.setdefault(node.target.id, node)
    elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
      if id(node) not in in_comprehension:
        found.setdefault(node.id, node)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      for alias in node.names:
        found.setdefault((alias.asname or alias.name).split(".")[0], node)
    elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
      found.setdefault(node.name, node)
    elif isinstance(node, ast.MatchMapping) and node.rest:
      found.setdefault(node.rest, node)
  return found


def _unsupported(loop: ast.For) -> Optional[str]:
  """Why `loop` cannot become a reduce; None if it can."""
  if loop.orelse:
    return "it has an `else` clause"
  stack = list(loop.body)
  while stack:  # `break` and `continue` of this loop: not those of a loop inside it.
    node = stack.pop()
    if isinstance(node, (ast.Break, ast.Continue)):
      return f"it has a `{type(node).__name__.lower()}`"
    if not isinstance(node, _SCOPES):
      stack.extend(node.orelse if isinstance(node, (ast.For, ast.While)) else
                   ast.iter_child_nodes(node))
  for node in _scope(loop.body):
    if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.Global,
                         ast.Nonlocal)):
      return f"it has a `{type(node).__name__.lower().replace('yieldfrom', 'yield from')}`"
  return None


def _plan(loop: ast.For, func: ast.FunctionDef) -> Union[str, tuple]:
  """The loop state's names, or why the loop is left as written."""
  why = _unsupported(loop)
  if why:
    return why
  assigned = _stores([loop.target, *loop.body])
  declared = {n for node in _scope(func.body) if isinstance(node, (ast.Global, ast.Nonlocal))
              for n in node.names}
  if set(assigned) & declared:
    return f"it assigns `{min(set(assigned) & declared)}`, declared global or nonlocal"
  before = _parameters(func) | {n for n, node in _stores(func.body, skip=loop).items()
             if (node.lineno, node.col_offset) < (loop.lineno, loop.col_offset)}
  for outer in _scope(func.body):  # A loop around this one may bind a name in a former pass.
    if isinstance(outer, (ast.For, ast.While)) and outer is not loop and any(
        n is loop for n in _scope(outer.body)):
      before |= set(_stores([*outer.body, *outer.orelse], skip=loop))
  targets = set(_stores([loop.target]))
  _, exposed = _exposed(loop.target, loop.body, loop)
  after = _reads(func.body, skip=loop)
  late = [n for n in assigned if n in after and (n in targets or n not in before)]
  if late:
    return (f"the loop variable `{late[0]}` is read after the loop" if late[0] in targets else
            f"`{late[0]}` is first bound in the loop and read after it")
  # The state: what a pass reads from the one before, and what is read after the loop.
  state = [n for n in assigned if n in exposed or n in after]
  unbound = [n for n in state if n not in before]
  if unbound:
    return f"`{unbound[0]}` is read in the loop before it is assigned, and not bound before it"
  for node in _scope([loop.target, *loop.body]):
    if isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
      root = node
      while isinstance(root, (ast.Attribute, ast.Subscript, ast.Starred)):
        root = root.value
      if not isinstance(root, ast.Name) or root.id in state or root.id not in assigned:
        return (f"it assigns to `{ast.unparse(node)}`, a part of an object from outside the "
                "loop, which the compiled loop cannot carry")
  return tuple(state)


def _exposed(target: ast.AST, body: list, skip: Optional[ast.AST]) -> tuple[set, set]:
  """(the names a pass of a loop body surely assigns before reading them, the names it may
  read before assigning them): statement by statement, a compound statement (`if`, `for`,
  `try`, `with`) assigning nothing surely."""
  killed, exposed = set(_stores([target])), set()
  for statement in body:
    exposed |= _reads([statement], skip) - killed
    if not isinstance(statement, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.With,
                                  ast.AsyncWith, ast.Match)):
      killed |= set(_stores([statement]))
  return killed, exposed


def _reads(nodes: list, skip: ast.AST) -> set:
  """The names the nodes read or delete (outside `skip`), or that a function, lambda or
  comprehension among them reads from the enclosing scope; not what a loop's body reads after
  assigning it (a second `for x in ...: y = f(x)` does not read the first loop's `x`, `y`)."""
  found = set()
  for node in nodes:
    if node is skip:
      continue
    if isinstance(node, ast.Name):
      if not isinstance(node.ctx, ast.Store):
        found.add(node.id)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      a = node.args
      body = node.body if isinstance(node.body, list) else [node.body]
      found |= _reads([*getattr(node, "decorator_list", []), *a.defaults,
                       *(d for d in a.kw_defaults if d)], skip)
      found |= _reads(body, skip) - _parameters(node) - set(_stores(body))
    elif isinstance(node, (ast.For, ast.AsyncFor)):  # Not what its body assigns, then reads.
      found |= _reads([node.target, node.iter, *node.orelse], skip)
      found |= _exposed(node.target, node.body, skip)[1]
    elif isinstance(node, _COMPREHENSIONS):
      targets = {n.id for g in node.generators for n in ast.walk(g.target)
                 if isinstance(n, ast.Name)}
      found |= _reads(list(ast.iter_child_nodes(node)), skip) - targets
    else:
      found |= _reads(list(ast.iter_child_nodes(node)), skip)
  return found


def _parameters(func: Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda]) -> set:
  a = func.args
  return {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}


class _Converter(ast.NodeTransformer):
  """Calls become `_fx_loops.converted(f)(...)`; planned loops become `for_stmt` calls."""

  def __init__(self, plans: dict, filename: str):
    self.plans = plans
    self.filename = filename
    self.count = 0

  def visit_Call(self, node: ast.Call) -> ast.Call:
    self.generic_visit(node)
    node.func = _located(_helper_call("converted", [node.func]), node.func)
    return node

  def visit_For(self, node: ast.For):
    plan = self.plans.get(id(node))
    with_iter = (isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name)
                 and node.iter.func.id == "iter" and len(node.iter.args) == 1
                 and not isinstance(node.iter.args[0], ast.Starred) and not node.iter.keywords)
    self.generic_visit(node)
    if plan is None:  # In a class body: left alone.
      return node
    if isinstance(plan, str):  # Where the iterable is a padded sequence, the reason is raised.
      header = node.iter
      if with_iter:
        node.iter.args[0] = _helper_call("not_converted", [node.iter.args[0], ast.Constant(plan)])
      else:
        node.iter = _helper_call("not_converted", [node.iter, ast.Constant(plan)])
      return _located(node, header)
    self.count += 1
    body_name, it, out = (f"_fx_{x}_{self.count}" for x in ("body", "iterable", "out"))
    state = lambda: ast.Tuple([ast.Name(n, ast.Store()) for n in plan], ast.Store())
    body = ast.FunctionDef(
        name=body_name, args=ast.arguments(
            posonlyargs=[], args=[ast.arg("_fx_state"), ast.arg("_fx_element")], kwonlyargs=[],
            kw_defaults=[], defaults=[]),
        body=([ast.Assign([state()], ast.Name("_fx_state", ast.Load()))] if plan else []) + [
            ast.Assign([copy.deepcopy(node.target)], ast.Name("_fx_element", ast.Load())),
            *copy.deepcopy(node.body),
            ast.Return(ast.Tuple([ast.Name(n, ast.Load()) for n in plan], ast.Load()))],
        decorator_list=[])
    iterable = node.iter.args[0] if with_iter else node.iter
    call = _helper_call("for_stmt", [
        ast.Name(it, ast.Load()), ast.Name(body_name, ast.Load()),
        ast.Tuple([ast.Constant(n) for n in plan], ast.Load()),
        ast.Constant(f"{self.filename}:{node.lineno}"),
        ast.Name("iter", ast.Load()) if with_iter else ast.Constant(None)])
    if with_iter:
      node.iter.args[0] = ast.Name(it, ast.Load())
    else:
      node.iter = ast.Name(it, ast.Load())
    compiled = [ast.Assign([state()], ast.Name(out, ast.Load()))] if plan else [ast.Pass()]
    return [_located(s, iterable) for s in (
        body, ast.Assign([ast.Name(it, ast.Store())], iterable),
        ast.Assign([ast.Name(out, ast.Store())], call),
        ast.If(ast.Compare(ast.Name(out, ast.Load()), [ast.Is()], [ast.Constant(None)]), [node],
               compiled))]


def _helper_call(name: str, args: list) -> ast.Call:
  return ast.Call(ast.Attribute(ast.Name(_HELPER, ast.Load()), name, ast.Load()), args, [])


def _located(new: ast.AST, at: ast.AST) -> ast.AST:
  """`new` with every node that has no position given `at`'s (the user's line)."""
  for node in ast.walk(new):
    if "lineno" in node._attributes and getattr(node, "lineno", None) is None:
      node.lineno, node.col_offset = at.lineno, at.col_offset
      node.end_lineno, node.end_col_offset = at.end_lineno, at.end_col_offset
  return new
