"""The transformer language-model example: its pieces, and the program end to end."""

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_layer_l2 as ll2

pytest.importorskip("flax")
pytest.importorskip("tqdm")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "transformer_lm.py"
OPTIMIZERS = ("layer_l2+adam", "layer_adamw", "adam", "adamw")


@pytest.fixture(scope="module")
def lm():
  spec = importlib.util.spec_from_file_location("transformer_lm", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, str(SCRIPT.parent))  # for the examples' shared modules
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(str(SCRIPT.parent))
  return module


@pytest.fixture(scope="module")
def small(lm):
  """A tiny model, its weights and a text of random tokens."""
  cfg = lm.Config(vocab=11, d_model=16, layers=2, heads=2, context=8)
  params = lm.init(jax.random.key(0), cfg)
  tokens = jax.random.randint(jax.random.key(1), (200,), 0, cfg.vocab)
  return cfg, params, tokens


# ----------------------------------------------------------------------------- data


def test_split_is_deterministic_and_disjoint_by_position(lm):
  text = lm.load_text()
  corpus = lm.split_text(text)
  again = lm.split_text(lm.load_text())
  assert corpus.chars == again.chars == "".join(sorted(set(text)))
  np.testing.assert_array_equal(corpus.train, again.train)
  np.testing.assert_array_equal(corpus.valid, again.valid)
  # The train split is the start of the text, the validation split the rest.
  assert len(corpus.train) + len(corpus.valid) == len(text) > 400_000
  assert len(corpus.valid) == round(0.1 * len(text))
  assert corpus.decode(corpus.train[:50]) == text[:50]
  assert corpus.decode(corpus.valid) == text[len(corpus.train) :]
  assert corpus.train.dtype == corpus.valid.dtype == np.int32


def test_split_of_a_small_text(lm):
  corpus = lm.split_text("banana bread", valid_fraction=0.25)
  assert corpus.chars == " abdenr"
  assert corpus.vocab == 7
  assert corpus.decode(corpus.train) == "banana br"
  assert corpus.decode(corpus.valid) == "ead"
  assert corpus.train.tolist()[:3] == [2, 1, 5]


def test_batch_starts_are_reproducible_and_keep_windows_inside(lm):
  starts = lm.batch_starts(100, 10, batch_size=4, steps=500, seed=3)
  assert starts.shape == (500, 4)
  assert starts.min() == 0 and starts.max() == 90  # a window of 10 fits at 90
  np.testing.assert_array_equal(starts, lm.batch_starts(100, 10, 4, 500, 3))
  assert not np.array_equal(starts, lm.batch_starts(100, 10, 4, 500, 4))
  batch = lm.windows(jnp.arange(100), jnp.asarray(starts[:2]), 10)
  np.testing.assert_array_equal(batch, starts[:2, :, None] + np.arange(10))


# ----------------------------------------------------------------------------- model


def test_logits_do_not_see_the_future(lm, small):
  cfg, params, tokens = small
  x = tokens[: cfg.context]
  for changed in (0, 3, cfg.context - 1):
    y = x.at[changed].set((x[changed] + 1) % cfg.vocab)
    before, after = lm.apply(cfg, params, x), lm.apply(cfg, params, y)
    assert before.shape == (cfg.context, cfg.vocab)
    np.testing.assert_array_equal(before[:changed], after[:changed])
    assert np.all(np.abs(before[changed:] - after[changed:]).max(axis=-1) > 1e-6)


def test_batched_logits_match_one_sequence_at_a_time(lm, small):
  cfg, params, tokens = small
  batch = tokens[: 3 * cfg.context].reshape(3, cfg.context)
  together = lm.apply(cfg, params, batch)
  for i in range(3):
    np.testing.assert_allclose(together[i], lm.apply(cfg, params, batch[i]), atol=1e-5)


def test_init_under_vmap_gives_one_model_per_key(lm, small):
  cfg, params, _ = small
  stacked = jax.vmap(lm.init, in_axes=(0, None))(jax.random.split(jax.random.key(0), 3), cfg)
  kernel = stacked["head"]["kernel"].get_value()
  assert kernel.shape == (3, cfg.d_model, cfg.vocab)
  assert not np.allclose(kernel[0], kernel[1])
  assert jax.tree.structure(stacked) == jax.tree.structure(params)


def test_describe_decays_kernels_and_embeddings_only(lm, small):
  cfg, params, _ = small
  rows = {row.path: row for row in ll2.describe(params, 0.1, "fan_avg").rows}
  decayed = {path for path, row in rows.items() if row.scale > 0}
  kernels = {path for path in rows if path.endswith(("kernel", "embedding"))}
  assert decayed == kernels
  assert len(kernels) == 2 + cfg.layers * 6 + 1  # embeddings, 4 attn + 2 mlp a block, head
  assert (rows["embed/embedding"].fan_in, rows["embed/embedding"].fan_out) == (11, 16)
  query = rows["blocks/0/attn/query/kernel"]
  assert (query.shape, query.fan_in, query.fan_out) == ((16, 2, 8), 16, 16)
  out = rows["blocks/1/attn/out/kernel"]
  assert (out.shape, out.fan_in, out.fan_out) == ((2, 8, 16), 16, 16)
  assert rows["blocks/0/attn_norm/scale"].skipped == "named 'scale'"
  assert rows["norm/bias"].skipped == "named 'bias'"
  # The mask given to optax.adamw is the same set of leaves.
  mask = lm.decayed_leaves(params)
  assert [bool(m) for m in jax.tree.leaves(mask)] == [row.scale > 0 for row in rows.values()]


def test_embedding_fan_in_flag_turns_the_tables_round(lm, small):
  _, params, _ = small
  dims = lm.embedding_dims("features")
  rows = {row.path: row for row in ll2.describe(params, 1.0, "fan_in", dims=dims).rows}
  assert (rows["embed/embedding"].fan_in, rows["embed/embedding"].fan_out) == (16, 11)
  assert rows["embed/embedding"].scale == pytest.approx(1 / 11)
  assert rows["head/kernel"].scale == pytest.approx(1 / 11)  # untouched: 1 / fan_out
  assert lm.embedding_dims("vocab") is None


# ----------------------------------------------------------------------------- training


def test_evaluate_predicts_every_character_once(lm, small):
  cfg, params, tokens = small
  tokens = tokens[:75]  # 9 windows of 9 tokens sharing end points, and a tail of 2
  bpc = lm.evaluate(cfg, params, tokens, batch_size=4)  # 3 chunks, the last one padded
  starts = jnp.arange(9) * cfg.context
  nats = lm.loss(cfg, params, lm.windows(tokens, starts, cfg.context + 1))
  assert float(bpc) == pytest.approx(float(nats) / math.log(2), rel=1e-5)
  assert 1.0 < float(bpc) < 2 * math.log2(cfg.vocab)


def test_fit_lowers_the_loss(lm, small):
  cfg, params, _ = small
  tokens = jnp.arange(200) * 7 % cfg.vocab  # the next token is always the same
  starts = lm.batch_starts(len(tokens), cfg.context + 1, 8, 60, seed=0)
  fitted, _, losses = jax.jit(lm.fit, static_argnums=(0, 1))(
    cfg, optax.adam(1e-2), params, tokens, starts
  )
  assert losses.shape == (60,)
  assert float(losses[0]) > math.log(cfg.vocab) - 0.5 and float(losses[-10:].mean()) < 0.5
  assert float(lm.evaluate(cfg, fitted, tokens)) < float(lm.evaluate(cfg, params, tokens))


def test_fit_vmaps_over_the_decay_strength(lm, small):
  """A sweep of lambdas in one program; lambda = 0 is plain Adam, up to rounding."""
  cfg, params, tokens = small
  starts = lm.batch_starts(len(tokens), cfg.context + 1, 8, 20, seed=0)

  def run(weight_decay):
    tx = optax.chain(ll2.layer_l2(weight_decay, "fan_avg"), optax.adam(1e-2))
    return lm.fit(cfg, tx, params, tokens, starts)

  swept, _, swept_losses = jax.jit(jax.vmap(run))(jnp.array([0.0, 30.0]))
  plain, _, plain_losses = lm.fit(cfg, optax.adam(1e-2), params, tokens, starts)
  np.testing.assert_allclose(swept_losses[0], plain_losses, rtol=1e-4)
  # Compare the decayed leaves: a key bias has no gradient but rounding noise,
  # which Adam blows up to full-size steps.
  mask = jax.tree.leaves(lm.decayed_leaves(params))
  decayed = [i for i, m in enumerate(mask) if m]
  swept, plain = jax.tree.leaves(swept), jax.tree.leaves(plain)
  for i in decayed:
    np.testing.assert_allclose(swept[i][0], plain[i], atol=1e-4)
  squares = [sum(float(jnp.sum(w[i] ** 2)) for w in (swept[j] for j in decayed)) for i in (0, 1)]
  assert squares[1] < 0.9 * squares[0]


# ----------------------------------------------------------------------------- program


def run_quick() -> subprocess.CompletedProcess:
  env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  return subprocess.run(
    [sys.executable, str(SCRIPT), "--quick"],
    capture_output=True,
    text=True,
    env=env,
    timeout=600,
    check=False,
  )


@pytest.fixture(scope="module")
def quick() -> subprocess.CompletedProcess:
  result = run_quick()
  assert result.returncode == 0, result.stderr[-4000:]
  return result


def table(stdout: str, first: str) -> list[dict[str, str]]:
  """The rows of the table whose header starts with ``first``, as dicts by column name.

  The columns are where the runs of dashes under the header are.
  """
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(first))
  spans = [match.span() for match in re.finditer(r"-+", lines[start + 1])]
  assert lines[start + 1] == "  ".join("-" * (b - a) for a, b in spans)
  names = [lines[start][a:b].strip() for a, b in spans]
  rows = []
  for line in lines[start + 2 :]:
    if not line.strip() or line[spans[0][1] : spans[1][0]].strip():  # not a table row
      break
    rows.append({name: line[a:b].strip() for name, (a, b) in zip(names, spans, strict=True)})
  return rows


@pytest.mark.slow
def test_quick_run_reports_the_split(lm, quick):
  corpus = lm.split_text(lm.load_text())
  sizes = f"train {len(corpus.train):,}, valid {len(corpus.valid):,}"
  assert f"Python {sys.version}" in quick.stdout
  assert f"vocabulary of {corpus.vocab}; {sizes}; training on the first 20,000." in quick.stdout


@pytest.mark.slow
def test_quick_run_describes_every_leaf(quick, lm):
  # The vocabulary is the characters of this Python's `pydoc_data.topics`:
  # 103 on Python 3.11, 104 on 3.12.
  vocab = lm.split_text(lm.load_text()).vocab
  rows = {row["path"]: row for row in table(quick.stdout, "path ")}
  assert len(rows) == 38
  decayed = {path for path, row in rows.items() if float(row["s"]) > 0}
  expected = {"embed/embedding", "position/embedding", "head/kernel"}
  for block in (0, 1):
    expected |= {f"blocks/{block}/attn/{name}/kernel" for name in ("query", "key", "value", "out")}
    expected |= {f"blocks/{block}/mlp_in/kernel", f"blocks/{block}/mlp_out/kernel"}
  assert decayed == expected
  for path, row in rows.items():
    if path in expected:
      assert float(row["lambda*s"]) == pytest.approx(0.3 * float(row["s"]), rel=1e-3), path
      assert float(row["penalty"]) > 0 and row["skipped"] == "", path
    else:  # biases, layer-norm scales and biases
      assert row["skipped"] == f"named '{path.rsplit('/', 1)[1]}'", path
  embedding = rows["embed/embedding"]
  assert (embedding["shape"], embedding["fan_in"], embedding["fan_out"]) == (
    f"({vocab}, 32)",
    str(vocab),
    "32",
  )
  query = rows["blocks/1/attn/query/kernel"]
  assert (query["shape"], query["fan_in"], query["fan_out"]) == ("(32, 4, 8)", "32", "32")
  assert re.search(
    r"^15 of 38 leaves decayed; weight_decay=0.3, scaling=fan_avg", quick.stdout, re.M
  )


@pytest.mark.slow
def test_quick_run_prints_four_finite_results(quick, lm):
  rows = {row["optimizer"]: row for row in table(quick.stdout, "optimizer ")}
  assert tuple(rows) == OPTIMIZERS
  uniform = math.log2(lm.split_text(lm.load_text()).vocab)
  for name, row in rows.items():
    train, valid = float(row["train bpc"]), float(row["valid bpc"])
    assert 1.0 < train < uniform and 1.0 < valid < uniform, name
    assert float(row["gap"]) == pytest.approx(valid - train, abs=2e-3)
    assert 0 < float(row["decayed RMS"]) < 1
  # Every decay shrinks the weights it acts on.
  rms = {name: float(row["decayed RMS"]) for name, row in rows.items()}
  assert all(rms[name] < rms["adam"] for name in OPTIMIZERS if name != "adam")
  for name in OPTIMIZERS:  # a progress bar for each run, on stderr
    assert re.search(rf"{re.escape(name)}: 100%.*300/300", quick.stderr), name
