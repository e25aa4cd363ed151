"""The public API as a user's type checker sees it.

`python -m mypy` (configured in pyproject.toml) checks this file strictly, as
it checks the package: each call here is one the docs allow, so it must
type-check, and `assert_type` pins what it returns. The calls marked
`# type: ignore[arg-type]` (or `[call-arg]`) are ones the signatures must
refuse; mypy fails on an ignore that is no longer needed. pytest runs the file
too, so every call also works, and the refused ones raise.
"""

from collections.abc import Callable
from typing import Any, assert_type

import jax
import jax.numpy as jnp
import optax
import pytest

import optax_layer_l2 as ll2


def _params() -> dict[str, dict[str, jax.Array]]:
  return {
    "dense": {"kernel": jnp.ones((4, 8)), "bias": jnp.zeros(8)},
    "embed": {"embedding": jnp.ones((16, 4))},
  }


def _per_output(info: ll2.LeafInfo) -> float:
  return 1.0 / info.fan_out


def _multiplier(path: str, leaf: jax.Array) -> float:
  del leaf
  return 0.5 if path.startswith("embed") else 1.0


def test_transformations() -> None:
  params = _params()
  pretrained = jax.tree.map(lambda w: 0.5 * w, params)
  narrow = jax.eval_shape(lambda: jax.tree.map(lambda w: w[..., :2], params))
  tx = ll2.layer_l2(
    optax.linear_schedule(0.0, 1e-2, transition_steps=10),
    "sqrt_fan_avg",
    mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
    dims=ll2.stacked(0, where="layers"),
    multipliers={"embed": 0.5},
    base=narrow,
    reference=pretrained,
  )
  assert_type(tx, optax.GradientTransformationExtraArgs)
  state = tx.init(params)
  assert_type(state, optax.OptState)
  assert isinstance(state, ll2.LayerL2ReferenceState)
  assert_type(state.count, jax.Array | None)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  assert isinstance(state, ll2.LayerL2ReferenceState)
  assert state.count is not None and int(state.count) == 1
  assert float(jnp.abs(updates["dense"]["kernel"]).max()) == 0.0  # the schedule starts at 0

  chained = optax.chain(ll2.layer_l2(1e-4, _per_output, reference="init"), optax.adam(1e-3))
  adamw = ll2.layer_adamw(
    optax.cosine_decay_schedule(1e-3, decay_steps=10),
    jnp.float32(0.1),
    "sqrt_fan_avg",
    mu_dtype=jnp.bfloat16,
    multipliers=_multiplier,
    dims={"dense": {"kernel": ll2.Dims(in_axes=0, out_axes=1), "bias": None}, "embed": None},
    base=jax.eval_shape(lambda: params),
  )
  for optimizer in (chained, adamw):
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    assert jax.tree.all(jax.tree.map(lambda u, p: u.shape == p.shape, updates, params))


def test_learning_rate_factors() -> None:
  params = _params()
  # Half the rows: the dense kernel's fan-in 4 against 2 in the base, the embedding's 16 against 8.
  base = jax.eval_shape(lambda: jax.tree.map(lambda w: w[: w.shape[0] // 2], params))
  rates = ll2.layer_lr(
    "inv_sqrt_fan_in",
    base=base,
    mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
    dims=ll2.stacked(0, where="layers"),
    multipliers={"embed": 0.5},
  )
  assert_type(rates, optax.GradientTransformationExtraArgs)
  state = rates.init(params)
  assert_type(state, optax.OptState)
  assert state == optax.EmptyState()
  ones = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(rates.update)(ones, state)
  assert float(updates["dense"]["kernel"][0, 0]) == pytest.approx(2**-0.5)
  assert float(updates["embed"]["embedding"][0, 0]) == pytest.approx(0.5 * 2**-0.5)
  assert float(updates["dense"]["bias"][0]) == 1.0

  lr_scaling: Callable[[ll2.LeafInfo], float] = ll2.LR_SCALINGS["inv_fan_in"]
  assert lr_scaling(ll2.LeafInfo("w", (4, 8), 4, 8, 32)) == 1 / 4
  by_output = ll2.layer_lr(_per_output, base=base)  # a callable, as `scaling` takes
  updates, _ = jax.jit(by_output.update)(ones, by_output.init(params))
  assert float(updates["dense"]["kernel"][0, 0]) == 1.0  # fan-out 8 at both

  adamw = ll2.layer_adamw(
    optax.cosine_decay_schedule(1e-3, decay_steps=10),
    jnp.float32(0.1),
    "none",
    lr_scaling="inv_fan_in",
    base=base,
  )
  assert_type(adamw, optax.GradientTransformationExtraArgs)
  updates, _ = jax.jit(adamw.update)(ones, adamw.init(params), params)
  # Adam's first step is 1 per weight, times r = 2 / 4; the decay 0.1 * w is not; times -1e-3.
  assert float(updates["dense"]["kernel"][0, 0]) == pytest.approx(-1e-3 * (0.5 + 0.1), rel=1e-5)

  report = ll2.describe(params, 0.1, "none", base=base, lr_scaling="inv_fan_in")
  assert_type(report.lr_scaling, str | None)
  row = report.rows[1]
  assert_type(row.lr_factor, float | None)
  assert (row.path, row.lr_factor) == ("dense/kernel", 0.5)


def test_inspection() -> None:
  params = _params()
  pretrained = jax.tree.map(lambda w: 0.5 * w, params)

  value = ll2.penalty(params, 0.1, "fan_avg", reference=pretrained)
  per_leaf = ll2.penalty(params, jnp.float32(0.1), per_leaf=True)
  assert float(value) == pytest.approx(0.25 * float(sum(jax.tree.leaves(per_leaf))))
  grads = jax.grad(ll2.penalty)(params, 0.1)
  assert grads["dense"]["kernel"].shape == (4, 8)

  factors = ll2.scales(params, "numel", base=jax.eval_shape(lambda: params))
  assert factors["dense"]["kernel"] == 1.0

  report = ll2.describe(params, 1e-3, "sqrt_fan_avg", base=params, reference=pretrained)
  assert_type(report, ll2.Report)
  assert_type(report.rows, tuple[ll2.Row, ...])
  assert_type(report.total_penalty, float | None)
  row = report.rows[1]
  assert_type(row.distance, float | None)
  assert_type(row.shape, tuple[int, ...] | None)
  assert (row.path, row.scale) == ("dense/kernel", 1.0)
  assert row.distance == pytest.approx(0.5 * 32**0.5)  # ||1 - 0.5|| over 4 * 8 weights
  assert "||w - w_ref||" in str(report)

  fans = ll2.fans((3, 3, 64, 128), ll2.Dims(in_axes=-2, out_axes=-1, batch_axes=()))
  assert_type(fans, ll2.Fans)
  assert_type(fans.fan_in, int)
  assert fans == (576, 1152, 73728)
  scaling: Callable[[ll2.LeafInfo], float] = ll2.SCALINGS["fan_avg"]
  assert scaling(ll2.LeafInfo("w", (4, 8), 4, 8, 32)) == 12 / 32


def test_signatures_refuse_what_the_docs_refuse() -> None:
  params: Any = _params()
  with pytest.raises(TypeError, match="`weight_decay` must be"):
    ll2.layer_l2("1e-4")  # type: ignore[arg-type]
  with pytest.raises(TypeError, match="`scaling` must be"):
    ll2.layer_l2(1e-4, scaling=2.0)  # type: ignore[arg-type]
  with pytest.raises(TypeError, match="`multipliers"):
    ll2.layer_adamw(1e-3, 1e-4, multipliers={"embed": "0.5"})  # type: ignore[dict-item]
  with pytest.raises(TypeError, match="not a schedule"):
    ll2.describe(params, optax.constant_schedule(0.1))  # type: ignore[arg-type]
  with pytest.raises(TypeError, match="`Dims"):
    ll2.Dims(in_axes="0", out_axes=1)  # type: ignore[arg-type]
  with pytest.raises(TypeError, match="base"):
    ll2.layer_lr("inv_fan_in")  # type: ignore[call-arg]
  with pytest.raises(TypeError, match="`lr_scaling` must be"):
    ll2.layer_lr(0.5, base=params)  # type: ignore[arg-type]
  with pytest.raises(TypeError, match="`lr_scaling` must be"):
    ll2.layer_adamw(1e-3, 1e-4, lr_scaling=1, base=params)  # type: ignore[arg-type]
