"""``infer_dims`` on hand-written JAX functions, against Dims worked out by hand.

Each function is traced from shapes alone (``jax.ShapeDtypeStruct``), so
nothing is computed. The expected ``Dims`` say which of the leaf's own axes
the computation contracts with data (fan-in), leaves free (fan-out) or
slices layer by layer (stacked).
"""

import contextlib
import io
import re
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import optax_layer_l2 as ll2
from optax_layer_l2._infer import reshape_sources
from optax_layer_l2._rule import is_dims_function

ROOT = Path(__file__).resolve().parents[1]
f32 = jnp.float32
HERE = Path(__file__).name


def shape(*dims, dtype=f32):
  return jax.ShapeDtypeStruct(dims, dtype)


X = shape(4, 32)  # a batch of 4 inputs of 32 features
IDS = shape(4, 7, dtype=jnp.int32)


def _is_dims(x):
  return x is None or isinstance(x, ll2.Dims)


def axes(tree):
  """``(in_axes, out_axes, batch_axes)`` of each entry, ``None`` where there is none."""
  return jax.tree.map(
    lambda d: None if d is None else (d.in_axes, d.out_axes, d.batch_axes), tree, is_leaf=_is_dims
  )


def reasons(tree):
  """Why each leaf got ``None``, as the result records it."""
  found = [d for d in jax.tree.leaves(tree, is_leaf=_is_dims) if isinstance(d, ll2.Dims)]
  return dict(found[0].why_none)


DENSE = ((0,), (1,), ())  # (in, out) kernel read as a dense layer
STACKED = ((1,), (2,), (0,))  # (layers, in, out)


# ---------------------------------------------------------------------------
# Rearrangements of a leaf on its way to the contraction.


@pytest.mark.parametrize(
  "old, new, expected",
  [
    ((4, 8, 16), (32, 16), [[0, 1], [2]]),  # merged
    ((32, 16), (4, 8, 16), [[0], [0], [1]]),  # split
    ((16, 4, 8), (16, 32), [[0], [1, 2]]),  # the later axes merged
    ((2, 3), (6,), [[0, 1]]),  # axes of size 2
    ((6,), (2, 3), [[0], [0]]),
    ((2, 2, 2), (2, 4), [[0], [1, 2]]),
    ((6, 4), (4, 6), [[0, 1], [0, 1]]),  # regrouped across: both from both
    ((1, 32, 1), (32,), [[1]]),  # size-1 axes belong to neither
    ((32,), (1, 32, 1), [[], [0], []]),
  ],
)
def test_reshape_sources(old, new, expected):
  assert reshape_sources(old, new) == expected


def test_a_reshape_that_merges_the_contracted_axes_last():
  dims = ll2.infer_dims(lambda p, x: x @ p["w"].reshape(16, 32).T, {"w": shape(16, 4, 8)}, X)
  assert axes(dims) == {"w": ((1, 2), (0,), ())}


def test_reshape_that_merges_axes_maps_both_to_fan_in():
  params = {"w": shape(4, 8, 16)}
  dims = ll2.infer_dims(lambda p, x: x @ p["w"].reshape(32, 16), params, X)
  assert axes(dims) == {"w": ((0, 1), (2,), ())}
  assert ll2.fans((4, 8, 16), dims["w"]) == ll2.Fans(32, 16, 512)


def test_reshape_that_splits_an_axis_maps_each_piece_back_to_it():
  params = {"w": shape(32, 32)}
  dims = ll2.infer_dims(
    lambda p, x: jnp.einsum("bd,dnh->bnh", x, p["w"].reshape(32, 4, 8)), params, X
  )
  assert axes(dims) == {"w": DENSE}
  # The contracted axis split instead, against an input of shape (4, 4, 8).
  dims = ll2.infer_dims(
    lambda p, x: jnp.einsum("bij,ijk->bk", x, p["w"].reshape(4, 8, 16)),
    {"w": shape(32, 16)},
    shape(4, 4, 8),
  )
  assert axes(dims) == {"w": DENSE}


def test_transpose_swaps_fan_in_and_fan_out():
  dims = ll2.infer_dims(lambda p, x: x @ p["w"].T, {"w": shape(16, 32)}, X)
  assert axes(dims) == {"w": ((1,), (0,), ())}
  assert ll2.fans((16, 32), dims["w"]) == ll2.Fans(32, 16, 512)


def test_broadcast_adds_axes_of_no_leaf():
  def fn(p, x):
    w = jnp.broadcast_to(p["w"], (4, 32, 16))  # one copy a batch element
    return jnp.einsum("bd,bde->be", x, w)

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 16)}, X)) == {"w": DENSE}


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_casts_are_followed(dtype):
  def fn(p, x):
    return x.astype(dtype) @ p["w"].astype(dtype)

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 16)}, X)) == {"w": DENSE}


def test_fused_qkv_concatenated_gives_each_part_its_own_dims():
  def fn(p, x):
    return x @ jnp.concatenate([p["q"], p["k"], p["v"]], axis=1)

  params = {name: shape(32, 16) for name in "qkv"}
  assert axes(ll2.infer_dims(fn, params, X)) == {name: DENSE for name in "kqv"}


@pytest.mark.parametrize("where", ["before", "after"])
def test_fused_qkv_split_with_jnp_split(where):
  def before(p, x):
    q, k, v = jnp.split(p["qkv"], 3, axis=1)
    return (x @ q) * (x @ k) + x @ v

  def after(p, x):
    q, k, v = jnp.split(x @ p["qkv"], 3, axis=1)
    return q * k + v

  fn = before if where == "before" else after
  dims = ll2.infer_dims(fn, {"qkv": shape(32, 48)}, X)
  assert axes(dims) == {"qkv": DENSE}
  assert ll2.fans((32, 48), dims["qkv"]) == ll2.Fans(32, 48, 32 * 48)


def test_slice_pad_and_reversal_keep_the_axes():
  def fn(p, x):
    w = jnp.pad(p["w"][:, :12], ((0, 0), (0, 4)))[::-1]
    return x @ w

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 16)}, X)) == {"w": DENSE}


def test_size_one_axes_squeezed_or_added_are_no_fan():
  def fn(p, x):
    return x @ jnp.squeeze(p["w"], 0)[:, None, :].reshape(32, 16)

  dims = ll2.infer_dims(fn, {"w": shape(1, 32, 16)}, X)
  assert ll2.fans((1, 32, 16), dims["w"]) == ll2.Fans(32, 16, 512)


def test_arithmetic_among_parameters_keeps_the_axes():
  # A weight norm and a learned mask: leaves combined with leaves and constants.
  def fn(p, x):
    w = p["g"] * p["v"] / jnp.linalg.norm(p["v"], axis=0) * (p["mask"] > 0)
    return x @ jnp.where(p["mask"] > 0.5, w, 0.0)

  params = {"v": shape(32, 16), "g": shape(16), "mask": shape(32, 16)}
  dims = ll2.infer_dims(fn, params, X)
  assert axes(dims) == {"v": DENSE, "mask": DENSE, "g": ((), (0,), ())}


def test_sharding_constraints_shard_map_device_put_and_barriers_are_followed():
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  if hasattr(jax, "shard_map"):
    from jax.sharding import AxisType

    mesh = jax.make_mesh((1,), ("model",), axis_types=(AxisType.Auto,))
    shard_map = jax.shard_map
  else:  # the jax floor, 0.4.35: mesh axes are Auto, shard_map experimental
    from jax.experimental.shard_map import shard_map

    mesh = jax.make_mesh((1,), ("model",))

  def fn(p, x):
    w = lax.with_sharding_constraint(p["w"], NamedSharding(mesh, P(None, "model")))
    # The input split over the mesh, the kernel replicated: shard_map marks it varying.
    project = shard_map(
      lambda x, w: x @ w, mesh=mesh, in_specs=(P("model"), P()), out_specs=P("model")
    )
    v, x = lax.optimization_barrier((p["v"], x))
    return project(x, w) + x @ jax.device_put(v)

  dims = ll2.infer_dims(fn, {"w": shape(32, 16), "v": shape(32, 16)}, X)
  assert axes(dims) == {"w": DENSE, "v": DENSE}


# ---------------------------------------------------------------------------
# Sub-computations and control flow.


@jax.custom_jvp
def _custom_jvp_matmul(x, w):
  return x @ w


_custom_jvp_matmul.defjvp(lambda primals, tangents: (_custom_jvp_matmul(*primals), tangents[0]))


@jax.custom_vjp
def _custom_vjp_matmul(x, w):
  return x @ w


_custom_vjp_matmul.defvjp(lambda x, w: (x @ w, (x, w)), lambda res, g: (g @ res[1].T, res[0].T @ g))


def test_nested_jit_checkpoint_custom_jvp_and_custom_vjp_are_followed():
  def fn(p, x):
    h = jax.jit(lambda x, w: x @ w)(x, p["jit"])
    h = jax.checkpoint(lambda x, w: jnp.tanh(x @ w))(h, p["remat"])
    h = _custom_jvp_matmul(h, p["jvp"])
    h = jax.jit(lambda x, w: _custom_vjp_matmul(x, w))(h, p["vjp"])
    return h

  params = {name: shape(32, 32) for name in ("jit", "remat", "jvp", "vjp")}
  assert axes(ll2.infer_dims(fn, params, X)) == {name: DENSE for name in params}


def test_scan_over_stacked_layers_makes_the_stacked_axis_a_batch_axis():
  def fn(p, x):
    def layer(h, w):
      return jnp.tanh(h @ w["kernel"] + w["bias"]), None

    return lax.scan(layer, x, p)[0]

  params = {"kernel": shape(5, 32, 32), "bias": shape(5, 32)}
  dims = ll2.infer_dims(fn, params, X)
  assert axes(dims) == {"kernel": STACKED, "bias": None}
  assert ll2.fans((5, 32, 32), dims["kernel"]) == ll2.Fans(32, 32, 1024)


def test_scan_with_a_leaf_as_a_constant_of_the_body():
  def fn(p, x):
    return lax.scan(lambda h, _: (h @ p["w"], None), x, None, length=3)[0]

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 32)}, X)) == {"w": DENSE}


def test_scan_outputs_stacked_then_read_again():
  # The scan stacks h @ w per step into ys (a new axis 0 of no leaf); ys is data.
  def fn(p, x):
    _, ys = lax.scan(lambda h, w: (h, h @ w), x, p["w"])
    return ys.sum(0) @ p["head"]

  dims = ll2.infer_dims(fn, {"w": shape(3, 32, 32), "head": shape(32, 10)}, X)
  assert axes(dims) == {"w": STACKED, "head": DENSE}


@pytest.mark.parametrize("loop", ["fori_loop", "python"])
def test_a_layer_picked_by_index_is_a_stacked_layer(loop):
  def fori(p, x):
    return lax.fori_loop(0, 5, lambda i, h: jnp.tanh(h @ p["w"][i]), x)

  def python(p, x):
    for i in range(5):  # a static index: a slice to size 1 and a squeeze
      x = jnp.tanh(x @ p["w"][i])
    return x

  fn = fori if loop == "fori_loop" else python
  dims = ll2.infer_dims(fn, {"w": shape(5, 32, 32)}, X)
  assert axes(dims) == {"w": STACKED}


def test_cond_branches_are_both_read():
  def fn(p, x):
    return lax.cond(x.sum() > 0, lambda x: x @ p["a"], lambda x: x @ p["b"].T, x)

  dims = ll2.infer_dims(fn, {"a": shape(32, 16), "b": shape(16, 32)}, X)
  assert axes(dims) == {"a": DENSE, "b": ((1,), (0,), ())}


def test_while_loop_body_and_a_leaf_only_its_condition_reads():
  def fn(p, x):
    def cond(carry):
      return carry[1] < p["steps"]

    def body(carry):
      h, i = carry
      return h @ p["a"], i + 1

    return lax.while_loop(cond, body, (x, 0.0))[0]

  dims = ll2.infer_dims(fn, {"a": shape(32, 32), "steps": shape()}, X)
  assert axes(dims) == {"a": DENSE, "steps": None}


def test_loop_carry_that_holds_a_leaf_is_followed_until_it_settles():
  # The carry starts as data and becomes the leaf's transpose on the second turn.
  def fn(p, x):
    def body(i, carry):
      h, w = carry
      return h @ w, w

    return lax.fori_loop(0, 3, body, (x, p["w"]))[0]

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 32)}, X)) == {"w": DENSE}


def test_loop_carry_that_takes_three_turns_to_hold_the_leaf():
  # The kernel enters slot 2 on the first turn, slot 1 on the second, the product on the third.
  def fn(p, x):
    zeros = jnp.zeros((32, 32))
    return lax.fori_loop(0, 5, lambda i, c: (c[0] @ c[1], c[2], p["w"]), (x, zeros, zeros))[0]

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 32)}, X)) == {"w": DENSE}


def test_loop_carry_that_passes_the_leaf_through_five_slots():
  def fn(p, x):
    zeros = jnp.zeros((32, 32))
    return lax.fori_loop(0, 8, lambda i, c: (c[0] @ c[1], *c[2:], p["w"]), (x, *[zeros] * 5))[0]

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 32)}, X)) == {"w": DENSE}


def test_a_loop_that_would_not_settle_is_an_error_not_a_hang(monkeypatch):
  from optax_layer_l2 import _infer

  monkeypatch.setattr(_infer, "_TURNS", 3)  # five slots need five turns

  def fn(p, x):
    zeros = jnp.zeros((32, 32))
    return lax.fori_loop(0, 8, lambda i, c: (c[0] @ c[1], *c[2:], p["w"]), (x, *[zeros] * 5))[0]

  with pytest.raises(RuntimeError) as error:
    ll2.infer_dims(fn, {"w": shape(32, 32)}, X)
  assert str(error.value) == (
    "`infer_dims`: a loop's carry still grew after 3 turns of the walk; please report this, "
    "with the function."
  )


def test_cond_whose_branches_give_data_alone_gives_data():
  def fn(p, x):
    h = lax.cond(x.sum() > 0, lambda x: x * p["gain"], lambda x: x, x)
    return (h * p["g2"]) @ p["w"]

  dims = ll2.infer_dims(fn, {"gain": shape(32), "g2": shape(32), "w": shape(32, 16)}, X)
  line = fn.__code__.co_firstlineno + 2
  assert axes(dims) == {"gain": None, "g2": None, "w": DENSE}
  assert reasons(dims)["g2"] == f"used elementwise with data in `mul` at {HERE}:{line}"


def test_control_flow_and_jit_on_data_alone_keep_what_is_data():
  def fn(p, x):
    h = lax.scan(lambda c, t: (c + t, None), x, jnp.stack([x, x]))[0]  # data only
    h = lax.cond(h.sum() > 0, jnp.tanh, jnp.sin, h)
    h, mask = jax.jit(lambda h: (h * 2, jnp.tril(jnp.ones((32, 16)))))(h)  # a constant mask
    return h @ (p["w"] * mask)

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 16)}, X)) == {"w": DENSE}


def test_a_scan_over_data_keeps_it_data():
  # Projected inputs scanned step by step; the gain meets data in the body.
  def fn(p, xs):
    hs = xs @ p["w_in"]
    _, ys = lax.scan(lambda c, h: (c, h * p["gain"]), 0.0, hs)
    return ys @ p["w_out"]

  params = {"w_in": shape(32, 16), "gain": shape(16), "w_out": shape(16, 8)}
  dims = ll2.infer_dims(fn, params, shape(5, 4, 32))
  line = fn.__code__.co_firstlineno + 2
  assert axes(dims) == {"w_in": DENSE, "gain": None, "w_out": DENSE}
  assert reasons(dims) == {"gain": f"used elementwise with data in `mul` at {HERE}:{line}"}


def test_scan_outputs_made_of_leaves_keep_their_axes():
  # Per-layer LoRA deltas computed in one scan, stacked as its output, used after it.
  def fn(p, x):
    _, deltas = lax.scan(lambda c, ab: (c, ab["a"] @ ab["b"]), 0.0, p)  # (layers, in, out)
    return jnp.einsum("bi,lio->lbo", x, deltas)

  dims = ll2.infer_dims(fn, {"a": shape(3, 32, 4), "b": shape(3, 4, 16)}, X)
  assert axes(dims) == {"a": STACKED, "b": STACKED}


def test_products_batched_over_layers_then_scanned():
  def fn(p, x):
    deltas = jnp.einsum("lir,lro->lio", p["a"], p["b"])  # a product with a batch axis
    return lax.scan(lambda h, d: (h @ d, None), x, deltas)[0]

  dims = ll2.infer_dims(fn, {"a": shape(3, 32, 4), "b": shape(3, 4, 32)}, X)
  assert axes(dims) == {"a": STACKED, "b": STACKED}


def test_vmap_over_stacked_layers_with_a_batched_input():
  def fn(p, xs):
    return jax.vmap(lambda w, x: jnp.tanh(x @ w))(p["w"], xs)

  dims = ll2.infer_dims(fn, {"w": shape(3, 32, 16)}, shape(3, 4, 32))
  assert axes(dims) == {"w": STACKED}


def test_ensemble_vmapped_over_a_shared_input_reads_the_member_axis_as_stacked():
  # The first kernel's member axis is free in its own contraction (the input
  # has none); the second kernel's contraction pairs it with its own member axis.
  def fn(p, x):
    return jax.vmap(lambda w: jnp.tanh(x @ w["a"] + w["a_bias"]) @ w["b"])(p)

  params = {"a": shape(3, 32, 16), "a_bias": shape(3, 16), "b": shape(3, 16, 8)}
  dims = ll2.infer_dims(fn, params, X)
  assert axes(dims) == {"a": STACKED, "a_bias": None, "b": STACKED}
  assert ll2.fans((3, 32, 16), dims["a"]) == ll2.Fans(32, 16, 512)


def test_ensembles_side_by_side_both_get_their_member_axis_stacked():
  def fn(p, x):
    return jax.vmap(lambda w: (jnp.tanh(x @ w["a"]) + jnp.tanh(x @ w["c"])) @ w["b"])(p)

  params = {"a": shape(3, 32, 16), "c": shape(3, 32, 16), "b": shape(3, 16, 8)}
  assert axes(ll2.infer_dims(fn, params, X)) == {"a": STACKED, "b": STACKED, "c": STACKED}


def test_ensemble_over_a_sequence_through_a_scan():
  # The first kernel's member axis rides through the scan (sliced, then stacked
  # again as its output) to the second kernel's contraction.
  def fn(p, xs):
    hs = jnp.einsum("tbd,edh->tebh", xs, p["a"])
    _, ys = lax.scan(lambda c, h: (c, jnp.tanh(h)), 0.0, hs)
    return jnp.einsum("tebh,ehk->tebk", ys, p["b"])

  params = {"a": shape(3, 32, 16), "b": shape(3, 16, 8)}
  assert axes(ll2.infer_dims(fn, params, shape(5, 4, 32))) == {"a": STACKED, "b": STACKED}


def test_a_free_axis_of_data_met_by_data_stays_a_fan_out():
  # Attention logits: q and k both come from data; nothing is stacked.
  def fn(p, x):
    q = jnp.einsum("btd,dnh->btnh", x, p["query"])
    k = jnp.einsum("btd,dnh->btnh", x, p["key"])
    return jnp.einsum("btnh,bsnh->bnts", q, k)

  params = {"query": shape(32, 4, 8), "key": shape(32, 4, 8)}
  dims = ll2.infer_dims(fn, params, shape(2, 5, 32))
  assert axes(dims) == {"query": ((0,), (1, 2), ()), "key": ((0,), (1, 2), ())}


# ---------------------------------------------------------------------------
# Lookups, convolutions.


@pytest.mark.parametrize(
  "lookup, table, expected",
  [
    (lambda e, ids: jnp.take(e, ids, axis=0), (100, 32), DENSE),
    (lambda e, ids: e[ids], (100, 32), DENSE),
    (lambda e, ids: jnp.take(e, ids, axis=1), (32, 100), ((1,), (0,), ())),
    (lambda e, ids: lax.dynamic_slice_in_dim(e, ids[0, 0], 1, axis=0), (100, 32), DENSE),
  ],
  ids=["take", "index", "take-axis-1", "dynamic-slice"],
)
def test_a_lookup_by_data_makes_the_indexed_axis_fan_in(lookup, table, expected):
  dims = ll2.infer_dims(
    lambda p, ids: lookup(p["embedding"], ids), {"embedding": shape(*table)}, IDS
  )
  assert axes(dims) == {"embedding": expected}
  assert dims["embedding"].use.startswith(("`gather` at", "`dynamic_slice` at"))
  assert dims["embedding"].use.endswith(", a lookup")


def test_constant_indices_pick_layers_rather_than_look_up():
  def fn(p, x):
    layers = p["w"][jnp.array([0, 2])]  # a gather by constant indices
    return x @ layers[0] + x @ layers[1]

  assert axes(ll2.infer_dims(fn, {"w": shape(3, 32, 16)}, X)) == {"w": STACKED}


@pytest.mark.parametrize(
  "read",
  [lambda pos, t: pos[jnp.arange(t)], lambda pos, t: pos[:t]],
  ids=["arange", "slice"],
)
def test_a_positional_table_read_at_fixed_positions_is_added_like_a_bias(read):
  # Not contracted with data: it is added to the activations, so it is read as a bias is
  # (the documented limit; the guide shows giving its Dims by hand).
  def fn(p, x):
    return (x + read(p["pos"], x.shape[1])) @ p["w"]

  params = {"pos": shape(16, 32), "w": shape(32, 10)}
  dims = ll2.infer_dims(fn, params, shape(2, 16, 32))
  assert dims["pos"] is None and axes(dims)["w"] == ((0,), (1,), ())
  (row,) = [row for row in ll2.describe(params, 0.1, dims=dims).rows if row.path == "pos"]
  assert row.skipped.startswith("used elementwise with data")


@pytest.mark.parametrize(
  "numbers, kernel, expected_in, expected_out",
  [
    (("NCHW", "OIHW", "NCHW"), (16, 3, 3, 3), (1,), (0,)),  # Equinox, PyTorch
    (("NHWC", "HWIO", "NHWC"), (3, 3, 3, 16), (2,), (3,)),  # Flax, Haiku
  ],
)
def test_a_convolution_reads_its_own_dimension_numbers(numbers, kernel, expected_in, expected_out):
  image = shape(2, 3, 8, 8) if numbers[0] == "NCHW" else shape(2, 8, 8, 3)

  def fn(p, x):
    return lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=numbers)

  dims = ll2.infer_dims(fn, {"kernel": shape(*kernel)}, image)
  assert (dims["kernel"].in_axes, dims["kernel"].out_axes) == (expected_in, expected_out)
  assert ll2.fans(kernel, dims["kernel"]) == ll2.Fans(27, 144, 432)


def test_a_convolution_without_dimension_numbers_is_nchw_oihw():
  def fn(p, x):
    return lax.conv(x, p["kernel"], (1, 1), "SAME")

  dims = ll2.infer_dims(fn, {"kernel": shape(16, 3, 3, 3)}, shape(2, 3, 8, 8))
  assert axes(dims) == {"kernel": ((1,), (0,), ())}


def test_a_convolution_of_two_leaves_contracts_neither_with_data():
  def fn(p, x):
    return x @ p["w"] + lax.conv(p["images"], p["kernel"], (1, 1), "SAME").sum()

  params = {"w": shape(32, 16), "images": shape(2, 3, 8, 8), "kernel": shape(16, 3, 3, 3)}
  dims = ll2.infer_dims(fn, params, X)
  where = f"`conv_general_dilated` at {HERE}:{fn.__code__.co_firstlineno + 1}"
  assert reasons(dims) == {
    "images": f"the input, not the kernel, of {where}",
    "kernel": f"contracted with another parameter, not with data, in {where}",
  }


def test_a_leaf_that_is_the_input_of_a_convolution_is_not_its_kernel():
  def fn(p, k):
    return lax.conv(p["image"], k, (1, 1), "SAME")

  with pytest.raises(ValueError, match="the input, not the kernel, of `conv_general_dilated`"):
    ll2.infer_dims(fn, {"image": shape(2, 3, 8, 8)}, shape(16, 3, 3, 3))


# ---------------------------------------------------------------------------
# What is not contracted, and why.


def test_a_leaf_fn_never_reads_is_none_and_describe_says_so():
  params = {"w": shape(32, 16), "unused": shape(3, 3)}
  dims = ll2.infer_dims(lambda p, x: x @ p["w"], params, X)
  assert axes(dims) == {"w": DENSE, "unused": None}
  rows = {row.path: row for row in ll2.describe(params, 1.0, dims=dims).rows}
  assert rows["unused"].skipped == "not used by fn"
  assert rows["unused"].scale == 0.0
  assert rows["w"].fans_from == "inferred"
  assert "not used by fn" in str(ll2.describe(params, 1.0, dims=dims))


def test_biases_of_any_rank_or_name_are_not_decayed_with_inferred_dims():
  params = {"w": shape(32, 16), "bias": shape(4, 16), "b": shape(16), "gain": shape(1, 16)}

  def fn(p, x):
    return (x @ p["w"] + p["bias"] + p["b"]) * p["gain"]

  dims = ll2.infer_dims(fn, params, X)
  assert axes(dims) == {"w": DENSE, "bias": None, "b": None, "gain": None}
  line = fn.__code__.co_firstlineno + 1
  assert reasons(dims) == {
    "b": f"used elementwise with data in `add` at {HERE}:{line}",
    "bias": f"used elementwise with data in `add` at {HERE}:{line}",
    "gain": f"used elementwise with data in `mul` at {HERE}:{line}",
  }
  scales = ll2.scales(params, "fan_in", dims=dims)
  assert scales == {"w": 1 / 16, "bias": 0.0, "b": 0.0, "gain": 0.0}
  # Without them the default mask would have decayed the rank-2 bias and the gain.
  assert ll2.scales(params, "fan_in")["gain"] == 1 / 16


def test_an_operation_without_a_rule_gives_none_with_its_name():
  def fn(p, x):
    return x @ p["w"] + x @ jnp.sort(p["sorted"], axis=0)

  dims = ll2.infer_dims(fn, {"w": shape(32, 16), "sorted": shape(32, 16)}, X)
  assert axes(dims) == {"w": DENSE, "sorted": None}
  assert reasons(dims) == {"sorted": "read by `sort`, which infer_dims cannot follow"}
  row = ll2.describe({"w": X, "sorted": shape(32, 16)}, 1.0, dims=dims).rows[0]
  assert (row.path, row.skipped) == ("sorted", "read by `sort`, which infer_dims cannot follow")


def test_a_leaf_reduced_before_it_meets_data_is_not_contracted():
  def fn(p, x):
    return x @ p["w"] * p["temperature"].sum()

  dims = ll2.infer_dims(fn, {"w": shape(32, 16), "temperature": shape(4, 4)}, X)
  assert reasons(dims) == {"temperature": "not contracted with data by fn"}


def test_a_leaf_mixed_with_data_before_the_contraction_is_not_contracted():
  def fn(p, x):
    return x @ p["w"] + x @ (p["scaled"] * x[0, 0])

  dims = ll2.infer_dims(fn, {"w": shape(32, 16), "scaled": shape(32, 16)}, X)
  line = fn.__code__.co_firstlineno + 1
  assert reasons(dims) == {"scaled": f"used elementwise with data in `mul` at {HERE}:{line}"}


@pytest.mark.parametrize("use", ["dot_general", "gather"])
def test_a_leaf_joined_with_data_before_the_contraction_is_not_contracted(use):
  def fn(p, x, ids):
    joined = jnp.concatenate([p["w"], x.T[:, :4]], axis=1)  # (32, 16 + 4): half leaf, half data
    return x @ p["v"] + (x @ joined if use == "dot_general" else joined[ids[0]]).sum()

  dims = ll2.infer_dims(fn, {"w": shape(32, 16), "v": shape(32, 16)}, X, IDS)
  line = fn.__code__.co_firstlineno + 2
  assert reasons(dims) == {"w": f"mixed with data before `{use}` at {HERE}:{line}"}


def test_data_times_data_is_data():
  # x * x is data: the gain meets data there, and the kernel is contracted with it.
  def fn(p, x):
    return (x * x * p["gain"]) @ p["w"]

  dims = ll2.infer_dims(fn, {"gain": shape(32), "w": shape(32, 16)}, X)
  line = fn.__code__.co_firstlineno + 1
  assert axes(dims) == {"gain": None, "w": DENSE}
  assert reasons(dims) == {"gain": f"used elementwise with data in `mul` at {HERE}:{line}"}


def test_a_leaf_combined_with_its_own_transpose_has_no_one_reading():
  def fn(p, x):
    return x @ p["v"] + x @ ((p["w"] + p["w"].T) / 2)  # a symmetric kernel

  dims = ll2.infer_dims(fn, {"w": shape(32, 32), "v": shape(32, 32)}, X)
  line = fn.__code__.co_firstlineno + 1
  assert axes(dims) == {"v": DENSE, "w": None}
  assert reasons(dims) == {
    "w": f"combined with itself in another arrangement before `dot_general` at {HERE}:{line}"
  }

  def rotating(p, x):  # the carry holds the kernel transposed on every other turn
    return lax.fori_loop(0, 4, lambda i, c: (c[0] @ c[1], c[1].T), (x, p["w"]))[0] @ p["v"]

  dims = ll2.infer_dims(rotating, {"w": shape(32, 32), "v": shape(32, 32)}, X)
  assert axes(dims) == {"v": DENSE, "w": None}
  assert reasons(dims)["w"].startswith("combined with itself in another arrangement before")


def test_a_leaf_contracted_with_a_constant_counts_as_contracted():
  # "Data" is what comes from the other arguments or from no argument at all.
  def fn(p, x):
    return x @ (jnp.eye(32) @ p["w"])

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 16)}, X)) == {"w": DENSE}


def test_none_leaves_stay_none():
  dims = ll2.infer_dims(lambda p, x: x @ p["w"], {"w": shape(32, 16), "gone": None}, X)
  assert axes(dims) == {"w": DENSE, "gone": None}


def test_its_axes_read_as_two_things_by_one_use():
  # Merged then split again, each axis of the (5, 32) comes from both leaf axes;
  # the scan slices one and the dot contracts the other.
  def fn(p, x):
    stack = p["w"].reshape(-1).reshape(5, 32)
    return lax.scan(lambda h, row: (h * (row @ h.T).sum(), None), x, stack)[0] @ p["head"]

  dims = ll2.infer_dims(fn, {"w": shape(5, 32), "head": shape(32, 16)}, X)
  assert dims["w"] is None
  assert reasons(dims)["w"].startswith("its axes are read as two things by `dot_general` at")


def test_fn_that_contracts_no_leaf_with_data_is_an_error():
  with pytest.raises(ValueError) as error:
    ll2.infer_dims(lambda p, x: x + p["b"], {"b": shape(32), "unused": shape(2, 2)}, X)
  line = test_fn_that_contracts_no_leaf_with_data_is_an_error.__code__.co_firstlineno + 2
  assert str(error.value) == (
    "`infer_dims`: `fn` contracts no leaf of `params` with data, so no fans can be read from "
    f"it ('b': used elementwise with data in `add` at {HERE}:{line}; 'unused': not used by "
    "fn). Check that `fn` is called as `fn(params, *args)` and uses the params it is given."
  )


@pytest.mark.parametrize("count, tail", [(3, "'b2': not used by fn)"), (4, "; and 1 more)")])
def test_the_error_summary_names_three_leaves_and_counts_the_rest(count, tail):
  params = {f"b{i}": shape(32) for i in range(count)}
  with pytest.raises(ValueError) as error:
    ll2.infer_dims(lambda p, x: x * 2, params, X)
  assert str(error.value).split(". Check")[0].endswith(tail)
  assert "'b3'" not in str(error.value)


# ---------------------------------------------------------------------------
# A leaf read two ways.


def test_tied_embedding_is_an_error_naming_the_leaf_and_both_uses():
  def fn(p, ids):
    return p["embed"][ids] @ p["embed"].T  # looked up, then the readout

  with pytest.raises(ValueError) as error:
    ll2.infer_dims(fn, {"embed": shape(100, 32)}, IDS)
  line = fn.__code__.co_firstlineno + 1
  assert str(error.value) == (
    "`infer_dims`: leaf 'embed' is read two ways: by `dot_general` at "
    f"{HERE}:{line} (fan-in axes [1], fan-out axes [0]) and by `gather` at {HERE}:{line}, "
    "a lookup (fan-in axes [0], fan-out axes [1]). A leaf shared by two layers of different "
    "shapes (an embedding tied to the readout) has no one fan-in; give its `Dims` yourself: "
    "pass the leaf to `fn` as data, an argument after `params`, and add its entry to the "
    "`Dims` that `infer_dims` gives for the rest of `params`."
  )


def test_tied_embedding_passed_as_data_and_its_dims_added_by_hand_is_decayed():
  # What the error says to do: the rest inferred, the tied leaf's entry added.
  params = {"embed": jnp.ones((100, 32)), "hidden": jnp.ones((32, 32))}

  def fn(p, ids):
    return jnp.tanh(p["embed"][ids] @ p["hidden"]) @ p["embed"].T

  rest = {"hidden": params["hidden"]}
  dims = ll2.infer_dims(
    lambda p, embed, ids: fn({**p, "embed": embed}, ids), rest, params["embed"], IDS
  )
  dims = {**dims, "embed": ll2.Dims(in_axes=0, out_axes=1)}
  rows = {row.path: row for row in ll2.describe(params, 1.0, "fan_in", dims=dims).rows}
  assert (rows["embed"].fans_from, rows["embed"].fan_in, rows["embed"].scale) == (
    "dims",
    100,
    1 / 32,
  )
  assert (rows["hidden"].fans_from, rows["hidden"].scale) == ("inferred", 1 / 32)


def test_the_two_uses_name_stacked_and_receptive_field_axes():
  def fn(p, x, image):
    conv = lax.conv(image, p["w"], (1, 1), "SAME")
    return conv.sum() + jnp.einsum("bi,oihw->bohw", x[:, :3], p["w"]).sum()

  with pytest.raises(ValueError, match=r"receptive-field axes \[2, 3\]\) and by `dot_general`"):
    ll2.infer_dims(fn, {"w": shape(16, 3, 3, 3)}, X, shape(2, 3, 8, 8))

  def stacked(p, x):
    scanned = lax.scan(lambda h, w: (h @ w, None), x, p["w"])[0]
    return scanned + x @ p["w"][0].T  # one layer of the stack, transposed

  with pytest.raises(ValueError) as error:
    ll2.infer_dims(stacked, {"w": shape(3, 32, 32)}, X)
  line = stacked.__code__.co_firstlineno
  assert (
    f"by `dot_general` at {HERE}:{line + 1} (fan-in axes [1], fan-out axes [2], stacked axes "
    f"[0]) and by `dot_general` at {HERE}:{line + 2} (fan-in axes [2], fan-out axes [1], "
    "stacked axes [0])."
  ) in str(error.value)


def test_a_leaf_read_three_ways_names_the_first_two():
  def fn(p, x, ids):
    flat = jnp.ones((4, 1024)) @ p["w"].reshape(-1)  # both axes fan-in
    return (x @ p["w"]).sum() + (x @ p["w"].T).sum() + flat.sum()

  with pytest.raises(ValueError, match=r"^`infer_dims`: leaf 'w' is read two ways: by `dot_g"):
    ll2.infer_dims(fn, {"w": shape(32, 32)}, X, IDS)


def test_a_leaf_read_the_same_way_twice_is_one_reading():
  def fn(p, x):
    return x @ p["w"] + jnp.tanh(x) @ p["w"]  # the same layer applied twice

  assert axes(ll2.infer_dims(fn, {"w": shape(32, 32)}, X)) == {"w": DENSE}


# ---------------------------------------------------------------------------
# LoRA and other products of parameters.


def test_lora_adapters_applied_in_turn_are_read_as_two_layers():
  params = {"a": shape(32, 4), "b": shape(4, 16)}
  dims = ll2.infer_dims(lambda p, x: x @ p["a"] @ p["b"], params, X)
  assert axes(dims) == {"a": DENSE, "b": DENSE}
  assert ll2.fans((32, 4), dims["a"]) == ll2.Fans(32, 4, 128)
  assert ll2.fans((4, 16), dims["b"]) == ll2.Fans(4, 16, 64)


@pytest.mark.parametrize(
  "fn",
  [
    lambda p, x: x @ (p["a"] @ p["b"]),
    lambda p, x: (p["a"] @ p["b"]).T @ x.T,  # the data contracts the product's other axis
    lambda p, x: x @ (p["w"] + p["a"] @ p["b"]),  # a merged delta
    lambda p, x: x @ (p["w"] + jnp.einsum("ir,ro->io", p["a"], p["b"]) * 2.0),
  ],
  ids=["product", "product-transposed", "merged", "merged-scaled"],
)
def test_a_product_of_two_leaves_reads_as_the_two_layers_applied_in_turn(fn):
  # x @ (A @ B) is (x @ A) @ B: A's axis met by data is fan-in, the one met by
  # B fan-out; B's axis met by A is fan-in.
  params = {"w": shape(32, 16), "a": shape(32, 4), "b": shape(4, 16)}
  dims = ll2.infer_dims(fn, params, X)
  assert dims["a"] == ll2.Dims(0, 1) and dims["b"] == ll2.Dims(0, 1)


def test_a_product_of_the_transposed_factors():
  # B.T @ A.T: the data meets B's axis 1 (fan-out of B) and A's axis 0 is fan-in.
  params = {"a": shape(32, 4), "b": shape(4, 16)}
  dims = ll2.infer_dims(lambda p, x: x @ (p["b"].T @ p["a"].T).T, params, X)
  assert axes(dims) == {"a": DENSE, "b": DENSE}


def test_a_product_of_three_leaves_or_of_a_leaf_with_itself_is_not_read():
  params = {"a": shape(32, 4), "b": shape(4, 4), "c": shape(4, 16), "w": shape(32, 16)}

  def three(p, x):
    return x @ p["w"] + x @ (p["a"] @ p["b"] @ p["c"])

  dims = ll2.infer_dims(three, params, X)
  line = three.__code__.co_firstlineno + 1
  assert axes(dims) == {"a": None, "b": None, "c": None, "w": DENSE}
  assert reasons(dims) == {
    # a @ b is read, and its product with c is not, so a and b were never met by data.
    "a": f"contracted with another parameter, not with data, in `dot_general` at {HERE}:{line}",
    "b": f"contracted with another parameter, not with data, in `dot_general` at {HERE}:{line}",
    "c": f"a factor of a product of three or more parameters in `dot_general` at {HERE}:{line}",
  }

  def gram(p, x):
    return x @ p["w"] + x @ (p["w"] @ p["w"].T)

  dims = ll2.infer_dims(gram, {"w": shape(32, 32)}, X)
  assert axes(dims) == {"w": DENSE}  # the Gram matrix adds no reading

  def gram_only(p, x):
    return x @ p["v"] + x @ (p["w"] @ p["w"].T)

  dims = ll2.infer_dims(gram_only, {"w": shape(32, 32), "v": shape(32, 32)}, X)
  line = gram_only.__code__.co_firstlineno + 1
  assert reasons(dims) == {"w": f"multiplied by itself in `dot_general` at {HERE}:{line}"}


def test_a_product_never_met_by_data_says_so():
  def fn(p, x):
    return x @ p["w"] + jnp.sum(p["a"] @ p["b"])  # a penalty on the delta, say

  params = {"w": shape(32, 16), "a": shape(32, 4), "b": shape(4, 16)}
  dims = ll2.infer_dims(fn, params, X)
  assert axes(dims) == {"w": DENSE, "a": None, "b": None}
  assert reasons(dims)["a"].startswith("contracted with another parameter, not with data")


# ---------------------------------------------------------------------------
# Bad input.


def test_fn_that_raises_gives_its_own_error_with_a_note():
  def forward(params, x):
    return x @ params["w"]  # (4, 32) @ (16, 8): shapes that do not fit

  with pytest.raises(TypeError, match="dot_general requires contracting dimensions") as error:
    ll2.infer_dims(forward, {"w": shape(16, 8)}, X)
  qualname = "test_fn_that_raises_gives_its_own_error_with_a_note.<locals>.forward"
  assert error.value.__notes__[-1] == (
    f"(raised while `infer_dims` traced `{qualname}(params, *args, **kwargs)`)"
  )


def test_a_callable_with_a_name_but_no_qualified_name_is_named_by_it():
  class Model:
    def __init__(self):
      self.__name__ = "decoder"

    def __call__(self, params, x):
      raise KeyError("decoder")

  with pytest.raises(KeyError) as error:
    ll2.infer_dims(Model(), {"w": shape(2, 2)}, X)
  assert error.value.__notes__[-1] == (
    "(raised while `infer_dims` traced `decoder(params, *args, **kwargs)`)"
  )


def test_a_callable_object_that_raises_is_named_by_its_type():
  class Model:
    def __call__(self, params, x):
      raise KeyError("decoder")

  with pytest.raises(KeyError, match="decoder") as error:
    ll2.infer_dims(Model(), {"w": shape(2, 2)}, X)
  assert error.value.__notes__[-1] == (
    "(raised while `infer_dims` traced `Model(params, *args, **kwargs)`)"
  )


def _activation(x):
  return x


@pytest.mark.parametrize(
  "leaf, kind",
  [
    (0.1, "float 0.1"),
    ("relu", "str 'relu'"),
    (_activation, "a function"),
    (types.SimpleNamespace(shape=(32, 16)), "a SimpleNamespace"),  # a shape, no dtype
  ],
)
def test_a_params_leaf_that_is_not_an_array_is_a_type_error(leaf, kind):
  with pytest.raises(TypeError) as error:
    ll2.infer_dims(lambda p, x: x @ p["w"], {"w": shape(32, 16), "act": leaf}, X)
  assert str(error.value) == (
    f"`infer_dims`: `params` leaf 'act' is {kind}; each leaf must be an array or a "
    "`jax.ShapeDtypeStruct` (or `None`). For an Equinox model, pass "
    "`eqx.filter(model, eqx.is_array)` and `eqx.combine` it with the rest inside `fn`."
  )


def test_other_arguments_that_are_not_arrays_pass_as_they_are():
  def fn(p, x, *, activation, scale=2):
    return activation(x @ p["w"]) * scale

  dims = ll2.infer_dims(fn, {"w": shape(32, 16)}, X, activation=jnp.tanh, scale=3)
  assert axes(dims) == {"w": DENSE}


def test_arrays_and_shapes_give_the_same_dims():
  params = {"w": jnp.zeros((32, 16)), "b": np.zeros(16, np.float32)}
  from_arrays = ll2.infer_dims(lambda p, x: x @ p["w"] + p["b"], params, jnp.ones((4, 32)))
  from_shapes = ll2.infer_dims(lambda p, x: x @ p["w"] + p["b"], jax.eval_shape(lambda: params), X)
  assert axes(from_arrays) == axes(from_shapes) == {"w": DENSE, "b": None}


def test_a_dims_tree_that_does_not_fit_the_params_names_the_first_leaf():
  params = {"w": shape(32, 16), "v": shape(32, 16)}
  dims = ll2.infer_dims(lambda p, x: x @ p["w"], {"w": shape(32, 16)}, X)
  with pytest.raises(ValueError) as error:
    ll2.scales(params, dims=dims)
  assert str(error.value) == (
    "`dims` must have the structure of `params`, or of a prefix of it; `params` has the "
    "leaf 'v', which no entry of `dims` covers."
  )


# ---------------------------------------------------------------------------
# The result in the transformations.


def test_layer_l2_with_inferred_dims_under_jit_is_layer_l2_with_the_same_explicit_dims():
  def fn(p, x):
    q = jnp.einsum("btd,dnh->btnh", x, p["query"]) + p["query_bias"]
    return jnp.einsum("btnh,nhd->btd", q, p["out"])

  params = {
    "query": jnp.full((64, 8, 16), 0.5),
    "query_bias": jnp.ones((8, 16)),
    "out": jnp.full((8, 16, 64), -0.25),
  }
  inferred = ll2.infer_dims(fn, params, shape(2, 5, 64))
  explicit = {
    "query": ll2.Dims(in_axes=0, out_axes=(1, 2)),
    "query_bias": None,
    "out": ll2.Dims(in_axes=(0, 1), out_axes=2),
  }
  mask = {"query": True, "query_bias": False, "out": True}
  grads = jax.tree.map(jnp.ones_like, params)
  results = []
  for dims, masked in ((inferred, None), (explicit, mask)):
    tx = ll2.layer_l2(0.1, "fan_in", dims=dims, mask=masked)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    results.append(updates)
  jax.tree.map(np.testing.assert_array_equal, results[0], results[1])
  # fan_in / numel = 1 / fan_out: 1/128 for the query, 1/64 for the output projection.
  np.testing.assert_allclose(results[0]["query"], 1 + 0.1 * 0.5 / 128, rtol=1e-6)
  np.testing.assert_allclose(results[0]["out"], 1 - 0.1 * 0.25 / 64, rtol=1e-6)
  np.testing.assert_array_equal(results[0]["query_bias"], 1.0)


def test_inferred_dims_in_layer_adamw_penalty_and_layer_lr():
  params = {"w": jnp.ones((32, 16)), "b": jnp.ones(16)}
  dims = ll2.infer_dims(lambda p, x: x @ p["w"] + p["b"], params, X)
  assert float(ll2.penalty(params, 2.0, "numel", dims=dims)) == pytest.approx(0.5 * 2.0)
  tx = ll2.layer_adamw(1e-3, 0.1, dims=dims)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  assert float(updates["b"][0]) == 0.0 and float(updates["w"][0, 0]) < 0.0
  rates = ll2.layer_lr("inv_fan_in", base={"w": shape(16, 16), "b": shape(16)}, dims=dims)
  updates, _ = rates.update(jax.tree.map(jnp.ones_like, params), rates.init(params), params)
  assert float(updates["w"][0, 0]) == pytest.approx(0.5) and float(updates["b"][0]) == 1.0


def test_an_equinox_module_of_dims_is_a_tree_not_a_dims_function():
  eqx = pytest.importorskip("equinox")
  model = eqx.nn.Linear(32, 16, key=jax.random.key(0))
  params, static = eqx.partition(model, eqx.is_array)
  dims = ll2.infer_dims(lambda p, x: jax.vmap(eqx.combine(p, static))(x), params, X)
  assert callable(dims) and not is_dims_function(dims)
  assert dims.weight == ll2.Dims(1, 0) and dims.bias is None
  scales = ll2.scales(params, "fan_in", dims=dims)
  assert (scales.weight, scales.bias) == (1 / 16, 0.0)


def test_the_readme_example_of_infer_dims_runs_and_prints_its_fans():
  pytest.importorskip("flax")
  if not (ROOT / "README.md").exists():
    pytest.skip("the README sits beside the library, in a clone of the repository")
  blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
  (block,) = [block for block in blocks if "infer_dims" in block]
  namespace = {}
  exec("import jax, jax.numpy as jnp, optax\nimport optax_layer_l2 as ll2", namespace)
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    exec(compile(block, "README.md", "exec"), namespace)
  assert printed.getvalue() == "Fans(fan_in=64, fan_out=128, numel=8192)\n"
  tx = namespace["tx"]
  params = jax.tree.map(jnp.ones_like, namespace["params"])  # a bias of ones, so a decay shows
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  assert float(jnp.abs(updates["bias"]).max()) == 0.0  # zero gradients: only the decay moves
  assert float(jnp.abs(updates["kernel"]).max()) > 0.0


def test_the_benchmark_runs_and_reports_its_ratio():
  if not (ROOT / "benchmarks" / "infer_dims.py").exists():
    pytest.skip("the benchmarks sit beside the library, in a clone of the repository")
  result = subprocess.run(
    [sys.executable, "-m", "benchmarks.infer_dims", "--quick"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  )
  assert "| ll2.infer_dims |" in result.stdout and "| jax.make_jaxpr |" in result.stdout
  assert re.search(
    r"Ratio \d+\.\d\d \(rounds \d+\.\d\d to \d+\.\d\d\), budget <= 3: ", result.stdout
  )
  assert "A 2-block Transformer: 44 leaves (16 contracted with data)" in result.stdout
