"""Fine-tuning with L2-SP: decay toward the pretrained weights, scaled per layer.

Pretrains an MLP on MNIST-1D (the source task), then fine-tunes it on a small
related target task: a few hundred signals made by the same generator with
another seed, more noise and more shear. The read-out is
replaced by a freshly initialised head, which is never decayed
(``multipliers={"^head/": 0.0}``). Four ways to fine-tune are compared:

* ``no decay``: Adam alone;
* ``L2 toward 0``: ``chain(layer_l2(lambda), adam)``, the usual L2;
* ``L2-SP``: ``chain(layer_l2(lambda, reference="init"), adam)``: L2 toward
  the pretrained weights, which are the params the optimizer's ``init`` sees;
* ``frozen body``: only the head is trained (a linear probe), the limit of
  L2-SP as ``lambda`` grows;
* ``scratch``: the same network trained from a random initialisation with
  Adam alone, to show what pretraining buys.

Each seed draws its own training and validation signals from the target pool
and its own head; for each seed, ``lambda`` is chosen on that seed's
validation split (lowest validation loss), and the test set (another 2,000
target signals) is used once, at that ``lambda``. The table gives the test
accuracy and cross-entropy as mean +- standard deviation over seeds; the
figure shows the validation loss against ``lambda`` for each method.

Every method is one compiled program: ``jax.vmap`` over ``lambda`` and seeds
around a jitted ``lax.scan`` training loop. MNIST-1D is generated offline by
the ``mnist1d`` package; nothing is downloaded.

Run it from a clone of the repository::

  python -m pip install -e ".[examples]"
  python examples/finetune.py --plot finetune.png   # the full comparison
  python examples/finetune.py --quick                # a smoke test (< 2 min)
"""

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from mnist1d.data import get_dataset_args, make_dataset
from text_table import format_table
from tqdm import tqdm

import optax_layer_l2 as ll2

METHODS = ("no decay", "L2 toward 0", "L2-SP", "frozen body", "scratch")
HEAD = {"^head/": 0.0}
"""``multipliers`` that leave the fresh head undecayed."""


@dataclasses.dataclass(frozen=True)
class Config:
  """The settings of one comparison; the defaults are the full run."""

  width: int = 256
  pretrain_steps: int = 3000
  pretrain_learning_rate: float = 3e-3
  target_train: int = 300
  target_val: int = 100
  steps: int = 500
  batch_size: int = 32
  learning_rate: float = 1e-3
  seeds: int = 5
  lambdas: tuple[float, ...] = tuple(np.logspace(-1.0, 5.0, 13))
  scaling: str = "fan_avg"

  def grid(self) -> np.ndarray:
    return np.asarray(self.lambdas, np.float64)


QUICK = Config(
  width=128,
  pretrain_steps=600,
  steps=150,
  seeds=3,
  lambdas=tuple(np.logspace(-1.0, 4.0, 6)),
)


# --- data and model -------------------------------------------------------------------------


def source_task() -> dict[str, np.ndarray]:
  """MNIST-1D as its generator makes it by default: 4,000 training, 1,000 test signals."""
  data = make_dataset(get_dataset_args())
  return {k: data[k].astype(np.float32 if k.startswith("x") else np.int32) for k in DATA_KEYS}


def target_task(pool: int = 2000, test: int = 2000) -> dict[str, np.ndarray]:
  """A harder relative of the source: another seed, more noise and more shear.

  ``x``/``y`` is a pool from which each seed draws its training and validation
  signals; ``x_test``/``y_test`` is the test set.
  """
  args = get_dataset_args()
  args.seed = 7  # the source's is 42
  args.num_samples = pool + test
  args.train_split = pool / (pool + test)
  args.corr_noise_scale = 0.3  # 0.25 in the source
  args.iid_noise_scale = 0.04  # 0.02
  args.shear_scale = 1.0  # 0.75
  data = make_dataset(args)
  return {k: data[k].astype(np.float32 if k.startswith("x") else np.int32) for k in DATA_KEYS}


DATA_KEYS = ("x", "y", "x_test", "y_test")


class MLP(nn.Module):
  """``40 -> width -> width -> 10`` with ReLU; the read-out is called ``head``."""

  width: int
  classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Dense(self.width)(x))
    x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.classes, name="head")(x)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def batch_indices(key: jax.Array, n: int, steps: int, batch_size: int) -> jax.Array:
  """``(steps, batch_size)`` example indices: a fresh shuffle every epoch."""
  per_epoch = n // batch_size
  epochs = -(-steps // per_epoch)
  keys = jax.random.split(key, epochs)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * batch_size])(keys)
  return perms.reshape(epochs * per_epoch, batch_size)[:steps]


# --- pretraining ----------------------------------------------------------------------------


def pretrain(model: MLP, cfg: Config, source: dict[str, np.ndarray]) -> tuple[dict, dict]:
  """Adam with a cosine learning rate on the source task; returns params and test metrics."""
  x, y = jnp.asarray(source["x"]), jnp.asarray(source["y"])
  batches = batch_indices(jax.random.key(10_000), len(y), cfg.pretrain_steps, 100)
  tx = optax.adam(optax.cosine_decay_schedule(cfg.pretrain_learning_rate, cfg.pretrain_steps))

  @jax.jit
  def run(params, batches, x, y, x_test, y_test):
    def step(carry, batch):
      params, state = carry
      grads = jax.grad(lambda p: cross_entropy(model.apply({"params": p}, x[batch]), y[batch]))(
        params
      )
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), batches)
    logits = model.apply({"params": params}, x_test)
    return params, {
      "accuracy": (logits.argmax(-1) == y_test).mean(),
      "loss": cross_entropy(logits, y_test),
    }

  params = model.init(jax.random.key(0), x[:1])["params"]
  params, metrics = run(params, batches, x, y, source["x_test"], source["y_test"])
  return params, {k: float(v) for k, v in metrics.items()}


# --- fine-tuning: one compiled program per method -------------------------------------------


def make_optimizer(
  method: str, weight_decay: jax.Array, cfg: Config
) -> optax.GradientTransformation:
  """The optimizer of one fine-tuning run; ``weight_decay`` may be traced (vmapped)."""
  adam = optax.adam(cfg.learning_rate)
  if method in ("no decay", "scratch"):
    return adam
  if method == "frozen body":  # train the head only: L2-SP's limit as lambda grows
    body = lambda params: {name: name != "head" for name in params}  # noqa: E731
    return optax.chain(optax.masked(optax.set_to_zero(), body), adam)
  reference = "init" if method == "L2-SP" else None  # "init": the pretrained weights
  decay = ll2.layer_l2(weight_decay, cfg.scaling, multipliers=HEAD, reference=reference)
  return optax.chain(decay, adam)  # coupled: L2 regularisation, as L2-SP is defined


def make_program(model: MLP, method: str, cfg: Config) -> Callable[..., dict]:
  """``program(lambdas[L], params[S], batches[S], split[S], test)`` -> metrics ``(L, S)``.

  For a given seed every lambda starts from the same weights and sees the same
  batches, so the curves over lambda are not blurred by seed noise.
  """

  def evaluate(params, x, y):
    logits = model.apply({"params": params}, x)
    return cross_entropy(logits, y), (logits.argmax(-1) == y).mean()

  def one_run(weight_decay, params, batches, split, test):
    tx = make_optimizer(method, weight_decay, cfg)
    start = params

    def step(carry, batch):
      params, state = carry
      x, y = split["x"][batch], split["y"][batch]
      grads = jax.grad(lambda p: cross_entropy(model.apply({"params": p}, x), y))(params)
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), batches)
    val_loss, val_acc = evaluate(params, split["x_val"], split["y_val"])
    test_loss, test_acc = evaluate(params, test["x"], test["y"])
    train_loss, _ = evaluate(params, split["x"], split["y"])
    body = [k for k in params if k != "head"]
    moved = sum(jnp.sum((params[k]["kernel"] - start[k]["kernel"]) ** 2) for k in body)
    return {
      "val_loss": val_loss,
      "val_acc": val_acc,
      "test_loss": test_loss,
      "test_acc": test_acc,
      "train_loss": train_loss,
      "moved": jnp.sqrt(moved),  # ||body kernels - their start||
    }

  over_seeds = jax.vmap(one_run, in_axes=(None, 0, 0, 0, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None, None, None)))


def seed_splits(target: dict[str, np.ndarray], cfg: Config) -> dict[str, np.ndarray]:
  """Each seed's training and validation signals, drawn from the target pool."""
  n = cfg.target_train + cfg.target_val
  picks = np.stack(
    [np.random.default_rng(seed).permutation(len(target["y"]))[:n] for seed in range(cfg.seeds)]
  )
  train, val = picks[:, : cfg.target_train], picks[:, cfg.target_train :]
  return {
    "x": target["x"][train],
    "y": target["y"][train],
    "x_val": target["x"][val],
    "y_val": target["y"][val],
  }


def starting_params(model: MLP, pretrained: dict, cfg: Config, fresh_body: bool) -> dict:
  """Per seed: the pretrained body (or a random one) and a freshly initialised head."""
  dummy = jnp.zeros((1, 40))
  seeds = jnp.arange(cfg.seeds) + 100
  params = jax.vmap(lambda seed: model.init(jax.random.key(seed), dummy)["params"])(seeds)
  if fresh_body:
    return params
  body = {k: v for k, v in pretrained.items() if k != "head"}
  stacked = jax.tree.map(lambda w: jnp.broadcast_to(w, (cfg.seeds, *w.shape)), body)
  return {**stacked, "head": params["head"]}


@dataclasses.dataclass
class Result:
  """One method: its lambda grid and metrics of shape ``(len(lambdas), seeds)``."""

  method: str
  lambdas: np.ndarray
  metrics: dict[str, np.ndarray]

  def chosen(self) -> np.ndarray:
    """Each seed's lambda index: the lowest validation loss on that seed's split."""
    return np.argmin(self.metrics["val_loss"], axis=0)

  def at_chosen(self, name: str) -> np.ndarray:
    """A metric per seed, at that seed's chosen lambda."""
    return self.metrics[name][self.chosen(), np.arange(self.metrics[name].shape[1])]


def finetune(model: MLP, pretrained: dict, cfg: Config, target: dict) -> list[Result]:
  """Runs every method, with a progress bar over them."""
  split = {k: jnp.asarray(v) for k, v in seed_splits(target, cfg).items()}
  test = {"x": jnp.asarray(target["x_test"]), "y": jnp.asarray(target["y_test"])}
  batches = jax.vmap(
    lambda seed: batch_indices(jax.random.key(seed), cfg.target_train, cfg.steps, cfg.batch_size)
  )(jnp.arange(cfg.seeds))
  results = []
  for method in tqdm(METHODS, desc="fine-tuning", unit="method", file=sys.stderr):
    decays = method in ("L2 toward 0", "L2-SP")
    lambdas = cfg.grid() if decays else np.zeros(1)
    params = starting_params(model, pretrained, cfg, fresh_body=method == "scratch")
    program = make_program(model, method, cfg)
    out = program(jnp.asarray(lambdas, jnp.float32), params, batches, split, test)
    metrics = {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}
    results.append(Result(method, lambdas, metrics))
  return results


# --- output ---------------------------------------------------------------------------------


HEADER = ("method", "lambda (per seed)", "val loss", "test acc %", "test loss", "||dW body||")


def mean_std(values: np.ndarray, scale: float = 1.0, digits: int = 3) -> str:
  values = scale * np.asarray(values)
  return f"{values.mean():.{digits}f} +- {values.std(ddof=1):.{digits}f}"


def results_table(results: Sequence[Result]) -> str:
  rows = []
  for result in results:
    if len(result.lambdas) > 1:
      chosen = ",".join(f"{result.lambdas[i]:.2g}" for i in result.chosen())
    else:
      chosen = "-"
    rows.append(
      (
        result.method,
        chosen,
        mean_std(result.at_chosen("val_loss")),
        mean_std(result.at_chosen("test_acc"), 100.0, 1),
        mean_std(result.at_chosen("test_loss")),
        mean_std(result.at_chosen("moved"), digits=2),
      )
    )
  return format_table(HEADER, rows)


def plot(results: Sequence[Result], cfg: Config, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
  colours = {
    "no decay": "0.3",
    "L2 toward 0": "C0",
    "L2-SP": "C3",
    "frozen body": "C2",
    "scratch": "0.65",
  }
  for result in results:
    val, test = result.metrics["val_loss"], 100 * result.metrics["test_acc"]
    colour = colours[result.method]
    if len(result.lambdas) == 1:  # no lambda: a level line across the grid
      for ax, values in ((loss_ax, val), (acc_ax, test)):
        ax.axhline(values.mean(), color=colour, ls="--", label=result.method)
      continue
    for ax, values in ((loss_ax, val), (acc_ax, test)):
      mean = values.mean(axis=1)
      ax.plot(result.lambdas, mean, "o-", color=colour, ms=3, label=result.method)
      ax.fill_between(
        result.lambdas, values.min(axis=1), values.max(axis=1), color=colour, alpha=0.15
      )
  loss_ax.set(xscale="log", xlabel="lambda", ylabel="validation cross-entropy")
  acc_ax.set(xscale="log", xlabel="lambda", ylabel="test accuracy (%)")
  loss_ax.set_title("validation loss (mean, band: min-max over seeds)", fontsize=9)
  acc_ax.set_title("test accuracy (for reference; lambda is chosen on validation)", fontsize=9)
  loss_ax.legend(fontsize=8)
  fig.suptitle(
    f"Fine-tuning on {cfg.target_train} target signals, {cfg.seeds} seeds, "
    f"coupled layer_l2 ({cfg.scaling}), fresh head not decayed",
    fontsize=10,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  print(f"\nSaved the figure to {path}")


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
  parser = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
  )
  parser.add_argument("--quick", action="store_true", help="a small run, under 2 minutes")
  parser.add_argument("--seeds", type=int, help="fine-tuning seeds (default 5, quick 3)")
  parser.add_argument("--steps", type=int, help="fine-tuning Adam steps (default 600)")
  parser.add_argument("--target-train", type=int, help="target training signals per seed")
  parser.add_argument("--scaling", choices=list(ll2.SCALINGS), help="layer_l2's scaling")
  parser.add_argument("--plot", default=None, help="save the figure to this PNG file")
  args = parser.parse_args(argv)
  cfg = QUICK if args.quick else Config()
  changes = {
    "seeds": args.seeds,
    "steps": args.steps,
    "target_train": args.target_train,
    "scaling": args.scaling,
  }
  cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
  return cfg, args


def main(argv: Sequence[str] | None = None) -> list[Result]:
  cfg, args = parse_args(argv)
  start = time.perf_counter()
  source, target = source_task(), target_task()
  model = MLP(cfg.width)
  with tqdm(total=1, desc="pretraining", unit="run", file=sys.stderr) as bar:
    pretrained, source_metrics = pretrain(model, cfg, source)
    bar.update()
  print(
    f"Pretrained MLP 40-{cfg.width}-{cfg.width}-10 on {len(source['y'])} source signals, "
    f"{cfg.pretrain_steps} Adam steps: source test accuracy {source_metrics['accuracy']:.1%}."
  )
  print("\nWhat layer_l2 gives each leaf when fine-tuning (the fresh head: multiplier 0):\n")
  print(ll2.describe(pretrained, 1.0, cfg.scaling, multipliers=HEAD))
  results = finetune(model, pretrained, cfg, target)
  print(
    f"\nFine-tuned on {cfg.target_train} target signals (+{cfg.target_val} for validation), "
    f"{cfg.steps} Adam steps of {cfg.batch_size}, lr={cfg.learning_rate:g}; "
    f"test: {len(target['y_test'])} target signals; {cfg.seeds} seeds, mean +- std.\n"
    f"lambda chosen per seed on its validation split from {len(cfg.lambdas)} values "
    f"in [{min(cfg.lambdas):.2g}, {max(cfg.lambdas):.2g}]; ||dW body||: distance of the "
    "body's kernels from where fine-tuning started.\n"
  )
  print(results_table(results))
  if args.plot:
    plot(results, cfg, args.plot)
  print(f"\nDone in {time.perf_counter() - start:.0f} s.")
  return results


if __name__ == "__main__":
  main()
