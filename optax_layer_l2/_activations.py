"""``activation_sizes``: how large each layer's output is, for a coord check on any JAX model.

muP's first diagnostic, the coord check, plots each layer's activation size
against width over the first steps of training: flat when the
parametrisation is right, growing or shrinking with width when it is not.
A layer's output, in any framework, is the result of the operation that
contracts its kernel with data, the operation :func:`infer_dims` finds. So
this module evaluates ``fn`` equation by equation, follows the leaves as
:func:`infer_dims` does, and records the mean absolute value of the result
of every contraction of a leaf with data (a ``dot_general``, a convolution,
a lookup), under the leaf's path.

Sub-computations called with their own operands (``jit``, ``checkpoint``,
``custom_jvp``, ``custom_vjp``) are evaluated equation by equation too; the
inside of a loop (``scan``, ``while``) or a ``cond`` is evaluated whole, so
layers stacked in a ``scan`` are not recorded one by one.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from optax_layer_l2._infer import (
  CONSTANT,
  CONTROL_FLOW,
  Findings,
  Info,
  _apply,
  _closed,
  _leaf_info,
  _split_arrays,
  _sub_jaxpr,
)
from optax_layer_l2._infer import DATA as _DATA
from optax_layer_l2._paths import flatten_with_paths

try:  # the public name of JAX's jaxpr literals, from jax 0.4.36
  from jax.extend.core import Literal
except ImportError:  # jax 0.4.35
  from jax.core import Literal  # type: ignore[attr-defined,no-redef]

_CONTRACTIONS = ("dot_general", "conv_general_dilated", "gather", "dynamic_slice")


def _param_only(info: Info) -> bool:
  return bool(info.origins) and not info.data


def _readers(eqn: Any, ins: Sequence[Info]) -> list[int]:
  """The leaves this equation contracts with data (what :func:`infer_dims` records as uses)."""
  name = eqn.primitive.name
  if name not in _CONTRACTIONS or not ins:
    return []
  if name in ("gather", "dynamic_slice"):
    operand, *indices = ins
    if _param_only(operand) and any(index.data for index in indices):
      return list(operand.origins)
    return []
  lhs, rhs = ins[:2]
  leaves: list[int] = []
  for operand, other in ((lhs, rhs), (rhs, lhs)):
    if _param_only(operand) and not _param_only(other):
      leaves.extend(operand.origins)
  return leaves


def _bind(eqn: Any, values: Sequence[Any]) -> Any:
  """The equation's primitive applied to ``values``, as ``jax.core.eval_jaxpr`` applies it."""
  bind_params = eqn.primitive.get_bind_params(eqn.params)
  if isinstance(bind_params, tuple):  # jax before 0.6: (sub-functions, parameters)
    subfuns, params = bind_params
    return eqn.primitive.bind(*subfuns, *values, **params)
  return eqn.primitive.bind(*values, **bind_params)


def _evaluate(
  jaxpr: Any,
  values: Sequence[Any],
  infos: Sequence[Info],
  findings: Findings,
  record: Callable[[int, jax.Array], None],
) -> tuple[list[Any], list[Info]]:
  open_jaxpr, consts = _closed(jaxpr)
  env: dict[Any, tuple[Any, Info]] = {}
  for var, const in zip(open_jaxpr.constvars, consts, strict=True):
    env[var] = (const, CONSTANT)
  for var, value, info in zip(open_jaxpr.invars, values, infos, strict=True):
    env[var] = (value, info)

  def read(atom: Any) -> tuple[Any, Info]:
    if isinstance(atom, Literal):
      return atom.val, CONSTANT
    return env[atom]

  for eqn in open_jaxpr.eqns:
    ins = [read(atom) for atom in eqn.invars]
    in_values = [value for value, _ in ins]
    in_infos = [info for _, info in ins]
    sub = None if eqn.primitive.name in CONTROL_FLOW else _sub_jaxpr(eqn)
    if sub is not None:
      out_values, out_infos = _evaluate(sub, in_values, in_infos, findings, record)
    else:
      result = _bind(eqn, in_values)
      out_values = list(result) if eqn.primitive.multiple_results else [result]
      out_infos = _apply(eqn, in_infos, findings)
      for leaf in _readers(eqn, in_infos):
        record(leaf, out_values[0])
    for var, value, info in zip(eqn.outvars, out_values, out_infos, strict=True):
      env[var] = (value, info)
  outs = [read(atom) for atom in open_jaxpr.outvars]
  return [value for value, _ in outs], [info for _, info in outs]


def activation_sizes(
  fn: Callable[..., Any], params: Any, *args: Any, **kwargs: Any
) -> dict[str, jax.Array]:
  """The mean absolute value of each layer's output in ``fn(params, *args, **kwargs)``.

  A layer's output is the result of the operation that contracts its leaf
  with data, as :func:`infer_dims` reads it: ``x @ W`` for a dense kernel,
  the convolution for a conv kernel, the rows looked up for an embedding.
  For a coord check, call it at several widths and after each of the first
  steps of training (``examples/coord_check.py`` does, with a plot).

  Args:
    fn: the forward pass, called as ``fn(params, *args, **kwargs)``.
    params: the parameter tree (arrays).
    *args: the other arguments of ``fn`` (a batch of inputs), as arrays.
    **kwargs: keyword arguments of ``fn``.

  Returns:
    A dict from leaf path to a float32 scalar, for each leaf ``fn``
    contracts with data (the mean over its uses, where it has several), in
    the order of the leaves.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"hidden": jnp.full((4, 8), 0.5), "out": jnp.full((8, 2), 0.25)}
    >>> def forward(params, x):
    ...   return jnp.tanh(x @ params["hidden"]) @ params["out"]
    >>> sizes = ll2.activation_sizes(forward, params, jnp.ones((3, 4)))
    >>> {path: round(float(size), 4) for path, size in sizes.items()}  # 4 * 0.5; 8 * tanh(2) / 4
    {'hidden': 2.0, 'out': 1.9281}
  """
  paths = flatten_with_paths(params)[0]
  param_where, param_shapes, rebuild_params = _split_arrays(params)
  data_where, data_shapes, rebuild_data = _split_arrays((args, kwargs))
  param_leaves = jax.tree.leaves(params, is_leaf=lambda x: x is None)
  data_leaves = jax.tree.leaves((args, kwargs), is_leaf=lambda x: x is None)
  param_arrays = [param_leaves[i] for i in param_where]
  data_arrays = [data_leaves[i] for i in data_where]
  signature = (
    fn,
    jax.tree.structure(params, is_leaf=lambda x: x is None),
    jax.tree.structure((args, kwargs), is_leaf=lambda x: x is None),
    tuple((tuple(x.shape), str(x.dtype)) for x in (*param_shapes, *data_shapes)),
  )
  compiled = _COMPILED.get(signature)
  if compiled is None:

    def traced(param_values: Sequence[Any], data_values: Sequence[Any]) -> Any:
      call_args, call_kwargs = rebuild_data(data_values)
      return fn(rebuild_params(param_values), *call_args, **call_kwargs)

    closed = jax.make_jaxpr(traced)(param_arrays, data_arrays)

    def evaluate(param_values: Sequence[Any], data_values: Sequence[Any]) -> dict[int, jax.Array]:
      sums: dict[int, list[jax.Array]] = {}

      def record(leaf: int, value: jax.Array) -> None:
        size = jnp.mean(jnp.abs(jnp.asarray(value, jnp.float32)))
        sums.setdefault(leaf, []).append(size)

      infos = [_leaf_info(i, shape) for i, shape in enumerate(param_shapes)]
      infos += [_DATA] * len(data_values)
      flat = [*jax.tree.leaves(param_values), *jax.tree.leaves(data_values)]
      _evaluate(closed, flat, infos, Findings(), record)
      return {leaf: jnp.mean(jnp.stack(values)) for leaf, values in sums.items()}

    compiled = jax.jit(evaluate)
    if len(_COMPILED) >= _CACHE_SIZE:
      _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[signature] = compiled
  sizes = compiled(param_arrays, data_arrays)
  return {paths[param_where[leaf]]: sizes[leaf] for leaf in sorted(sizes)}


_CACHE_SIZE = 16
_COMPILED: dict[Any, Callable[..., dict[int, jax.Array]]] = {}
"""The compiled evaluations of the last few functions and shapes (a coord check calls often)."""
