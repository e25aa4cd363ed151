"""The dtype the decay, the penalty and the rate factors are computed in."""

from typing import Any

import jax
import jax.numpy as jnp


def compute_dtype(*dtypes: Any) -> Any:
  """The inputs' common dtype, and at least float32.

  Half-precision leaves are widened so that a small term (``lambda * s * w``,
  ``r * u``) is not lost to underflow before it is rounded once, back to the
  leaf's dtype.
  """
  return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def decayed_value(
  param: jax.Array, reference: jax.typing.ArrayLike | None, dtype: jax.typing.DTypeLike
) -> jax.Array:
  """``param - reference`` in ``dtype``; ``param`` alone without a reference."""
  if reference is None:
    return param.astype(dtype)
  return param.astype(dtype) - jnp.asarray(reference).astype(dtype)


def is_real_floating(leaf: Any) -> bool:
  """Whether ``leaf`` has a real floating dtype (a PRNG key or an int has not)."""
  try:
    return bool(jnp.issubdtype(leaf.dtype, jnp.floating))
  except TypeError:  # extended dtypes, such as typed PRNG keys
    return False
