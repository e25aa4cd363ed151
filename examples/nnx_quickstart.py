"""The quickstart in Flax NNX: an MLP on MNIST-1D, with and without per-layer L2.

The same experiment as ``quickstart.py``, written with ``nnx.Module``,
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``nnx.jit``. ``layer_l2``
reads the leaf paths of the ``nnx.Param`` state (``hidden/0/kernel``,
``out/bias``), so ``mask``, ``dims`` and ``multipliers`` are written the same
way as for a linen parameter dict.

Run it from a clone of the repository::

  python -m pip install -e ".[examples]"
  python examples/nnx_quickstart.py
  python examples/nnx_quickstart.py --steps 2000 --weight-decay 0.3
"""

import itertools

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from quickstart import (
  RESULTS_HEADER,
  batch_indices,
  cross_entropy,
  load_mnist1d,
  parse_args,
  results_row,
)
from text_table import format_table
from tqdm import tqdm

import optax_layer_l2 as ll2


class MLP(nnx.Module):
  """``depth`` hidden ReLU layers of ``width`` units and a linear read-out."""

  def __init__(self, width: int, depth: int, *, rngs: nnx.Rngs, features: int = 40):
    sizes = [features] + [width] * depth
    self.hidden = nnx.List(
      [nnx.Linear(n_in, n_out, rngs=rngs) for n_in, n_out in itertools.pairwise(sizes)]
    )
    self.out = nnx.Linear(width, 10, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.hidden:
      x = nnx.relu(layer(x))
    return self.out(x)


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
  """One step on the unregularised loss: the optimizer's ``tx`` adds the decay."""

  def loss_fn(model):
    return cross_entropy(model(x), y)

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def evaluate(model: MLP, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
  logits = model(x)
  return {
    "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
    "cross_entropy": cross_entropy(logits, y),
  }


def train(name, model, tx, data, order, eval_every) -> MLP:
  """Trains ``model`` in place with ``tx`` on the batches ``order``."""
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
  with tqdm(total=len(order), desc=f"{name:>13}", unit="step") as bar:
    for step, idx in enumerate(order, start=1):
      loss = train_step(model, optimizer, x[idx], y[idx])
      bar.update()
      if step % eval_every == 0 or step == len(order):
        test = evaluate(model, data["x_test"], data["y_test"])
        bar.set_postfix(loss=f"{float(loss):.3f}", test_acc=f"{float(test['accuracy']):.3f}")
  return model


def main(argv: list[str] | None = None) -> dict[str, MLP]:
  args = parse_args(argv)
  data = load_mnist1d()
  order = batch_indices(len(data["y"]), args.batch_size, args.steps, args.seed)
  print(f"MNIST-1D: {len(data['y'])} training and {len(data['y_test'])} test signals.")

  def fresh_model() -> MLP:  # the same seed, so both runs start from the same weights
    return MLP(args.width, args.depth, rngs=nnx.Rngs(args.seed))

  print("\nWhat layer_l2 gives each nnx.Param, at initialisation:\n")
  print(ll2.describe(nnx.state(fresh_model(), nnx.Param), args.weight_decay, args.scaling))
  print()

  learning_rate = optax.cosine_decay_schedule(args.learning_rate, args.steps)
  optimizers = {
    "adam": optax.adam(learning_rate),
    "layer_l2+adam": optax.chain(
      ll2.layer_l2(args.weight_decay, args.scaling), optax.adam(learning_rate)
    ),
  }
  models = {
    name: train(name, fresh_model(), tx, data, order, args.eval_every)
    for name, tx in optimizers.items()
  }

  print("\nAfter training with layer_l2:\n")
  params = nnx.state(models["layer_l2+adam"], nnx.Param)
  print(ll2.describe(params, args.weight_decay, args.scaling))
  print(
    f"\nNNX MLP {args.depth}x{args.width}, {args.steps} steps of {args.batch_size}, "
    f"Adam lr={args.learning_rate:g} (cosine), seed {args.seed}; "
    f"penalty = ll2.penalty(params, {args.weight_decay:g}, {args.scaling!r}).\n"
  )
  rows = [
    results_row(
      name,
      evaluate(model, data["x"], data["y"]),
      evaluate(model, data["x_test"], data["y_test"]),
      ll2.penalty(nnx.state(model, nnx.Param), args.weight_decay, args.scaling),
    )
    for name, model in models.items()
  ]
  print(format_table(RESULTS_HEADER, rows))
  return models


if __name__ == "__main__":
  main()
