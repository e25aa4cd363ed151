"""Quickstart: a Flax MLP on MNIST-1D, with and without per-layer L2.

Trains the same MLP twice, from the same initialisation and on the same
batches, with Adam and a cosine-decayed learning rate: once plain, once with
per-layer L2 regularisation in front of Adam,

  optax.chain(ll2.layer_l2(weight_decay, scaling), optax.adam(learning_rate)).

It prints what ``layer_l2`` gives every leaf (``ll2.describe``) before and
after training, then a table of test accuracy, test cross-entropy (the
unregularised loss) and the penalty ``ll2.penalty`` of both trained networks.
MNIST-1D is generated on the spot by the ``mnist1d`` package (4,000 training
and 1,000 test signals of length 40, ten classes); nothing is downloaded.

Run it from a clone of the repository::

  python -m pip install -e ".[examples]"
  python examples/quickstart.py
  python examples/quickstart.py --width 512 --scaling numel --weight-decay 50
  python examples/quickstart.py --plot quickstart.png
"""

import argparse
import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state
from mnist1d.data import get_dataset_args, make_dataset
from text_table import format_table
from tqdm import tqdm

import optax_layer_l2 as ll2


class MLP(nn.Module):
  """``depth`` hidden ReLU layers of ``width`` units and a linear read-out."""

  width: int
  depth: int = 2
  classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.classes)(x)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description="Train a Flax MLP on MNIST-1D with Adam, with and without ll2.layer_l2.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  parser.add_argument("--steps", type=int, default=6000, help="training steps per run")
  parser.add_argument("--width", type=int, default=256, help="units in each hidden layer")
  parser.add_argument("--depth", type=int, default=2, help="number of hidden layers")
  parser.add_argument("--weight-decay", type=float, default=0.1, help="lambda of layer_l2")
  parser.add_argument("--scaling", default="fan_avg", choices=list(ll2.SCALINGS), help="c(w)")
  parser.add_argument(
    "--learning-rate", type=float, default=1e-2, help="Adam's first step size (cosine decay)"
  )
  parser.add_argument("--batch-size", type=int, default=100, help="signals per step")
  parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the batches")
  parser.add_argument("--eval-every", type=int, default=500, help="steps between test evals")
  parser.add_argument("--plot", default=None, help="save the test curves to this image file")
  return parser.parse_args(argv)


def load_mnist1d() -> dict[str, np.ndarray]:
  """MNIST-1D as float32 signals and int32 labels, generated offline."""
  data = make_dataset(get_dataset_args())
  return {
    "x": data["x"].astype(np.float32),
    "y": data["y"].astype(np.int32),
    "x_test": data["x_test"].astype(np.float32),
    "y_test": data["y_test"].astype(np.int32),
  }


def batch_indices(num_examples: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
  """``steps`` rows of example indices; each epoch is a fresh permutation."""
  rng = np.random.default_rng(seed)
  per_epoch = num_examples // batch_size
  epochs = -(-steps // per_epoch)
  order = [rng.permutation(num_examples)[: per_epoch * batch_size] for _ in range(epochs)]
  return np.concatenate(order).reshape(-1, batch_size)[:steps]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@jax.jit
def train_step(state: train_state.TrainState, x: jax.Array, y: jax.Array):
  """One step on the unregularised loss: ``state.tx`` adds the decay."""

  def loss_fn(params):
    return cross_entropy(state.apply_fn({"params": params}, x), y)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


@functools.partial(jax.jit, static_argnums=0)
def evaluate(apply_fn, params, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
  """Accuracy and cross-entropy of the model ``apply_fn`` with ``params`` on ``(x, y)``."""
  logits = apply_fn({"params": params}, x)
  return {
    "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
    "cross_entropy": cross_entropy(logits, y),
  }


@dataclasses.dataclass
class Run:
  """A trained network and its test curve of (step, accuracy, cross-entropy)."""

  name: str
  state: train_state.TrainState
  curve: list[tuple[int, float, float]]


def train(name, model, params, tx, data, order, eval_every) -> Run:
  """Trains ``params`` with ``tx`` on the batches ``order``, showing a progress bar."""
  state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
  curve = []
  with tqdm(total=len(order), desc=f"{name:>13}", unit="step") as bar:
    for step, idx in enumerate(order, start=1):
      state, loss = train_step(state, x[idx], y[idx])
      bar.update()
      if step % eval_every == 0 or step == len(order):
        test = jax.device_get(evaluate(model.apply, state.params, data["x_test"], data["y_test"]))
        curve.append((step, float(test["accuracy"]), float(test["cross_entropy"])))
        bar.set_postfix(loss=f"{float(loss):.3f}", test_acc=f"{test['accuracy']:.3f}")
  return Run(name, state, curve)


RESULTS_HEADER = ("optimizer", "train acc", "test acc", "test xent", "penalty")


def results_row(name: str, train_metrics, test_metrics, penalty) -> tuple[str, ...]:
  """One row of the results table: accuracies, test cross-entropy, penalty."""
  return (
    name,
    f"{float(train_metrics['accuracy']):.1%}",
    f"{float(test_metrics['accuracy']):.1%}",
    f"{float(test_metrics['cross_entropy']):.4f}",
    f"{float(penalty):.4f}",
  )


def plot(runs: list[Run], path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (acc_ax, xent_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
  for run in runs:
    steps, accuracy, xent = zip(*run.curve, strict=True)
    acc_ax.plot(steps, accuracy, label=run.name)
    xent_ax.plot(steps, xent, label=run.name)
  acc_ax.set(xlabel="step", ylabel="test accuracy")
  xent_ax.set(xlabel="step", ylabel="test cross-entropy")
  acc_ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  print(f"\nSaved the test curves to {path}")


def main(argv: list[str] | None = None) -> list[Run]:
  args = parse_args(argv)
  start = time.perf_counter()
  data = load_mnist1d()
  model = MLP(args.width, args.depth)
  params = model.init(jax.random.key(args.seed), data["x"][:1])["params"]
  order = batch_indices(len(data["y"]), args.batch_size, args.steps, args.seed)
  print(f"MNIST-1D: {len(data['y'])} training and {len(data['y_test'])} test signals.")

  print("\nWhat layer_l2 gives each leaf, at initialisation:\n")
  print(ll2.describe(params, args.weight_decay, args.scaling))
  print()

  learning_rate = optax.cosine_decay_schedule(args.learning_rate, args.steps)
  optimizers = {
    "adam": optax.adam(learning_rate),
    "layer_l2+adam": optax.chain(
      ll2.layer_l2(args.weight_decay, args.scaling), optax.adam(learning_rate)
    ),
  }
  runs = [
    train(name, model, params, tx, data, order, args.eval_every) for name, tx in optimizers.items()
  ]

  print("\nAfter training with layer_l2:\n")
  print(ll2.describe(runs[-1].state.params, args.weight_decay, args.scaling))
  print(
    f"\nMLP {args.depth}x{args.width}, {args.steps} steps of {args.batch_size}, "
    f"Adam lr={args.learning_rate:g} (cosine), seed {args.seed}; "
    f"penalty = ll2.penalty(params, {args.weight_decay:g}, {args.scaling!r}).\n"
  )
  rows = [
    results_row(
      run.name,
      evaluate(model.apply, run.state.params, data["x"], data["y"]),
      evaluate(model.apply, run.state.params, data["x_test"], data["y_test"]),
      ll2.penalty(run.state.params, args.weight_decay, args.scaling),
    )
    for run in runs
  ]
  print(format_table(RESULTS_HEADER, rows))
  if args.plot:
    plot(runs, args.plot)
  print(f"\nDone in {time.perf_counter() - start:.0f} s.")
  return runs


if __name__ == "__main__":
  main()
