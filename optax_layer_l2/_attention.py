"""Attention's query kernels: their head dimension, and muP's multiplier on them.

muP scales attention logits by ``1/head_dim`` where a standard model scales
them by ``1/sqrt(head_dim)``. Moved into the query kernel, that is a
multiplier ``1/sqrt(head_dim)`` on it, relative to the base; this module is
the one place it is computed, for :func:`rescale_init` and for the learning
rates of ``lr_scaling="mup"``.
"""

import math
import re

from optax_layer_l2._fans import Dims

QUERY = r"(^|/)query/kernel$"
"""Flax's attention query kernels (``MultiHeadDotProductAttention``, ``nnx.MultiHeadAttention``)."""


def head_dim(path: str, shape: tuple[int, ...], dims: Dims) -> int:
  """The head dimension of a query kernel: the last of its fan-out axes.

  A query kernel ``(d_model, heads, head_dim)`` (Flax's, or an einsum's
  with ``dims``) has two fan-out axes. One fan-out axis, ``(d_model,
  heads * head_dim)``, does not say where the heads part: that is an error.
  """
  rank = len(shape)
  out_axes = sorted(axis % rank for axis in dims.out_axes)  # type: ignore[union-attr]
  if len(out_axes) < 2:
    raise ValueError(
      f"`rescale_init(query=...)`: leaf {path!r} of shape {shape} has one fan-out axis, so "
      "its head dimension cannot be told from it; give the query kernel as (d_model, heads, "
      "head_dim), or leave it out of `query` and scale its logits in the model."
    )
  return shape[out_axes[-1]]


def query_factor(path: str, shape: tuple[int, ...], dims: Dims, pattern: str = QUERY) -> float:
  """``1 / sqrt(head_dim)`` for a query kernel ``pattern`` matches, 1 for every other leaf.

  Relative to the base, ``sqrt(head_dim(base) / head_dim)``: the multiplier
  ``a`` that makes the model's ``1/sqrt(head_dim)`` logits muP's
  ``1/head_dim``, moved into the query kernel's initialisation and rate.
  """
  if not re.search(pattern, path):
    return 1.0
  return 1.0 / math.sqrt(head_dim(path, shape, dims))
