"""The width studies' machinery, on synthetic inputs whose answers are known.

The lattice of (learning rate, lambda) pairs, the search that walks it, the
quadratic refinement of an optimum, the transfer measures and their table,
``runs.csv`` with its learning-rate column, the check of the base width's shared
rows, the settings' grids, and the driver through a tiny architecture of its
own. The studies themselves run as smoke tests in ``test_width_sweep.py`` and
``test_transformer_width_study.py``.
"""

import csv
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("tqdm")


def _width_study():
  sys.path.insert(0, str(ROOT / "examples"))
  try:
    from width_study import lattice, runs, tables, transfer
  finally:
    sys.path.pop(0)
  return lattice, runs, tables, transfer


lattice, runs, tables, transfer = _width_study()

# The default MLP study's lattice: 3 points a decade from a rate of 1e-3 and a lambda of 10**-1.667.
LATTICE = lattice.Lattice(-3.0, -1.667, 3)


# --- the lattice -------------------------------------------------------------------------------


def test_pair_and_point_are_inverse() -> None:
  assert LATTICE.pair((0, 0)) == (pytest.approx(1e-3), pytest.approx(10**-1.667))
  assert LATTICE.pair((3, -3)) == (pytest.approx(1e-2), pytest.approx(10**-2.667))
  assert LATTICE.pair((-2, 1)) == (
    pytest.approx(10 ** (-3 - 2 / 3)),
    pytest.approx(10 ** (-1.667 + 1 / 3)),
  )
  for point in itertools.product(range(-6, 7), repeat=2):
    rate, lam = LATTICE.pair(point)
    assert LATTICE.point(rate, lam) == point
    # runs.csv keeps 6 significant digits: still the same point.
    assert LATTICE.point(float(f"{rate:.6g}"), float(f"{lam:.6g}")) == point


def test_box_covers_the_ranges() -> None:
  # The default MLP study's box: rates 1e-3 .. 10**-1.333, lambdas 10**-1.667 .. 10**0.333.
  box = LATTICE.box((-3.0, -1.333), (-1.667, 0.333))
  assert box == [(i, j) for i in range(6) for j in range(7)]
  logs = np.log10([LATTICE.pair(p) for p in box])
  assert logs[:, 0].min() == pytest.approx(-3.0) and logs[:, 0].max() == pytest.approx(-4 / 3)
  assert logs[:, 1].min() == pytest.approx(-1.667) and logs[:, 1].max() == pytest.approx(0.333)
  # A box away from the lattice's origin, on another one.
  other = lattice.Lattice(-2.0, -1.0, 2)
  assert other.box((-1.0, 0.0), (-2.0, -1.0)) == [(i, j) for i in (2, 3, 4) for j in (-2, -1, 0)]


def test_window_is_the_square_around_its_centre() -> None:
  assert lattice.window((4, -2)) == [(i, j) for i in (3, 4, 5) for j in (-3, -2, -1)]
  assert len(lattice.window((0, 0), radius=2)) == 25


def test_best_point_takes_the_seed_mean_and_counts_nan_as_worst() -> None:
  results = {
    (0, 0): {"test_loss": np.array([1.0, 3.0])},  # mean 2.0
    (0, 1): {"test_loss": np.array([0.5, 3.7])},  # mean 2.1, though its best seed is lowest
    (1, 0): {"test_loss": np.array([np.nan, 0.1])},
  }
  assert lattice.best_point(results) == (0, 0)
  results[0, 0] = {"test_loss": np.array([2.1, 2.1])}  # a tie: the lower point
  assert lattice.best_point(results) == (0, 0)


# --- the search --------------------------------------------------------------------------------

MINIMUM = (5, -3)


def _bowl(point: tuple[int, int]) -> float:
  """A convex quadratic of the lattice indices, with a cross term, lowest at ``MINIMUM``."""
  x, y = point[0] - MINIMUM[0], point[1] - MINIMUM[1]
  return 1.0 + x * x + 2.0 * y * y + 0.5 * x * y


def _trainer():
  """A ``train`` callable over two seeds of ``_bowl`` and the list of points it trained."""
  trained: list[tuple[int, int]] = []

  def train(points):
    trained.extend(points)
    loss = np.array([_bowl(p) for p in points])
    return {"test_loss": loss[:, None] + np.array([-0.1, 0.1]), "calls": np.ones((len(points), 2))}

  return train, trained


def test_search_walks_out_of_its_start_and_settles_at_the_minimum() -> None:
  # The bowl's lowest lattice point, by brute force, is its vertex.
  assert min(itertools.product(range(-20, 21), repeat=2), key=_bowl) == MINIMUM
  train, trained = _trainer()
  start = lattice.window((0, 0))  # far from the minimum
  assert MINIMUM not in start
  found = lattice.search(train, start, max_moves=20)
  assert found.settled
  assert lattice.best_point(found.results) == MINIMUM
  assert all(p in found.results for p in lattice.window(MINIMUM))
  # The start's best is (1, -1); a move shifts the best by at most one step a
  # coordinate, so reaching i = 5 takes 4 moves, and completing its window one
  # more: on this bowl the walk takes the fewest.
  assert min(start, key=_bowl) == (1, -1)
  assert found.moves == 5
  # Every point trained once, each with its own losses over the seeds.
  assert len(trained) == len(set(trained))
  assert set(trained) == set(found.results) >= set(start)
  for point, metrics in found.results.items():
    np.testing.assert_allclose(metrics["test_loss"], _bowl(point) + np.array([-0.1, 0.1]))
    np.testing.assert_array_equal(metrics["calls"], [1.0, 1.0])


def test_search_from_a_box_around_the_minimum_needs_no_move() -> None:
  train, trained = _trainer()
  start = lattice.window(MINIMUM, radius=2)
  found = lattice.search(train, [*start, *start[:3]], max_moves=4)  # repeats trained once
  assert (found.settled, found.moves) == (True, 0)
  assert sorted(trained) == sorted(start)
  assert lattice.best_point(found.results) == MINIMUM


def test_search_stops_unsettled_after_max_moves_and_resumes_from_its_results() -> None:
  train, trained = _trainer()
  found = lattice.search(train, lattice.window((0, 0)), max_moves=2)
  assert (found.settled, found.moves) == (False, 2)
  best = lattice.best_point(found.results)
  assert best != MINIMUM
  assert best[0] <= 1 + 2  # at most one step a move from the start's best, (1, -1)
  assert len(trained) == len(set(trained)) == len(found.results)
  # Given those results, a second search trains none of them again.
  before = len(trained)
  again = lattice.search(train, lattice.window(best), max_moves=20, results=found.results)
  assert again.settled
  assert lattice.best_point(again.results) == MINIMUM
  assert not set(trained[before:]) & set(found.results)
  assert len(trained) == len(set(trained)) == len(again.results)


# --- the quadratic refinement ------------------------------------------------------------------

OFFSETS = np.array([-1.0, 0.0, 1.0])


def _block(f) -> np.ndarray:
  """``f(x, y)`` at the 3 x 3 offsets: ``values[a, b] = f(a - 1, b - 1)``."""
  x, y = np.meshgrid(OFFSETS, OFFSETS, indexing="ij")
  return f(x, y)


def test_quadratic_vertex_of_an_exact_quadratic() -> None:
  vertex = lattice.quadratic_vertex(_block(lambda x, y: 1.0 + 2 * (x - 0.3) ** 2 + (y + 0.4) ** 2))
  assert vertex == (pytest.approx(0.3, abs=1e-12), pytest.approx(-0.4, abs=1e-12))


def test_quadratic_vertex_of_a_rotated_quadratic() -> None:
  # 3 u^2 + v^2 in axes turned by 30 degrees, around (-0.25, 0.5): a cross term x y.
  c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)

  def f(x, y):
    u, v = c * (x + 0.25) + s * (y - 0.5), -s * (x + 0.25) + c * (y - 0.5)
    return 0.7 + 3 * u * u + v * v

  assert f(1.0, 1.0) - f(1.0, 0.0) - f(0.0, 1.0) + f(0.0, 0.0) != pytest.approx(0.0)  # x y term
  vertex = lattice.quadratic_vertex(_block(f))
  assert vertex == (pytest.approx(-0.25, abs=1e-12), pytest.approx(0.5, abs=1e-12))


def test_quadratic_vertex_is_clipped_to_the_block() -> None:
  vertex = lattice.quadratic_vertex(_block(lambda x, y: (x - 2.5) ** 2 + (y + 0.2) ** 2))
  assert vertex == (1.0, pytest.approx(-0.2, abs=1e-12))


def test_quadratic_vertex_is_none_without_a_minimum() -> None:
  assert lattice.quadratic_vertex(_block(lambda x, y: x * x - y * y)) is None  # saddle
  assert lattice.quadratic_vertex(_block(lambda x, y: -(x * x) - y * y)) is None  # maximum
  assert lattice.quadratic_vertex(_block(lambda x, y: x * x + 0.0 * y)) is None  # flat in y
  bowl = _block(lambda x, y: x * x + y * y)
  bowl[0, 2] = np.nan
  assert lattice.quadratic_vertex(bowl) is None
  bowl[0, 2] = np.inf
  assert lattice.quadratic_vertex(bowl) is None
  assert lattice.quadratic_vertex(np.ones((2, 3))) is None


def _surface(i: float, j: float) -> float:
  """An exact quadratic of the lattice indices, lowest at (4.4, 2.7), with a cross term."""
  x, y = i - 4.4, j - 2.7
  return 1.0 + x * x + 0.5 * y * y + 0.3 * x * y


def test_refined_optimum_of_an_exact_quadratic_surface() -> None:
  values = {(i, j): _surface(i, j) for i in range(9) for j in range(7)}
  assert min(values, key=values.get) == (4, 3)
  log_rate, log_lambda, best, ok = lattice.refined(LATTICE, values)
  assert (best, ok) == ((4, 3), True)
  assert log_rate == pytest.approx(-3.0 + 4.4 / 3, abs=1e-12)
  assert log_lambda == pytest.approx(-1.667 + 2.7 / 3, abs=1e-12)
  # A NaN far from the optimum changes nothing; a NaN next to it stops the refinement.
  values[0, 0] = np.nan
  assert lattice.refined(LATTICE, values)[:2] == (
    pytest.approx(log_rate),
    pytest.approx(log_lambda),
  )
  values[5, 2] = np.nan
  log_rate, log_lambda, best, ok = lattice.refined(LATTICE, values)
  assert (best, ok) == ((4, 3), False)
  assert (log_rate, log_lambda) == (pytest.approx(-3.0 + 4 / 3), pytest.approx(-1.667 + 1.0))


def test_refined_optimum_is_the_best_point_where_its_neighbourhood_is_not_trained() -> None:
  values = {(i, j): _surface(i, j) for i in range(5) for j in range(7)}  # i = 5 untrained
  log_rate, log_lambda, best, ok = lattice.refined(LATTICE, values)
  assert (best, ok) == ((4, 3), False)
  assert (log_rate, log_lambda) == (pytest.approx(-3.0 + 4 / 3), pytest.approx(-1.667 + 1.0))


# --- the transfer measures and their table -----------------------------------------------------

BASE, WIDE = 8, 16
RECIPES = ("stays", "moves")
BASE_POINT = (3, 2)  # the base width's optimum; "moves" finds its own one step up in rate, (4, 2)
POINTS = [(i, j) for i in range(1, 6) for j in range(5)]


def _joint_row(width, recipe, centre, depth, seed_offsets) -> "runs.Row":
  """A joint row over ``POINTS``: ``depth + 0.1 |p - centre|^2`` plus an offset a seed."""
  pairs = np.array([LATTICE.pair(p) for p in POINTS])
  mean = np.array([depth + 0.1 * ((i - centre[0]) ** 2 + (j - centre[1]) ** 2) for i, j in POINTS])
  loss = mean[:, None] + np.array(seed_offsets)
  return runs.Row(width, recipe, runs.JOINT, pairs[:, 1], {"test_loss": loss}, rates=pairs[:, 0])


def _found():
  base = _joint_row(BASE, "stays", BASE_POINT, 2.0, (-0.01, 0.01))
  rows = [
    base,
    runs.Row(BASE, "moves", runs.JOINT, base.lambdas, base.metrics, rates=base.rates),
    _joint_row(WIDE, "stays", BASE_POINT, 1.0, (-0.01, 0.01)),
    _joint_row(WIDE, "moves", (4, 2), 1.05, (-0.02, 0.02)),
  ]
  grid = runs.joint_rows(rows)
  assert set(grid) == {(r, w) for r in RECIPES for w in (BASE, WIDE)}
  return transfer.transfers(grid, LATTICE, (BASE, WIDE), RECIPES)


def test_losses_are_keyed_by_lattice_point() -> None:
  row = _joint_row(WIDE, "moves", (4, 2), 1.05, (-0.02, 0.02))
  values = transfer.losses(row, LATTICE)
  assert sorted(values) == POINTS
  np.testing.assert_allclose(values[4, 2], [1.03, 1.07])
  np.testing.assert_allclose(values[BASE_POINT], [1.13, 1.17])


def test_transfers_measure_drift_regret_and_quality() -> None:
  found = _found()
  assert set(found) == {(r, w) for r in RECIPES for w in (BASE, WIDE)}
  base_rate, base_lambda = -3.0 + 3 / 3, -1.667 + 2 / 3
  for recipe in RECIPES:  # at the base, both recipes are the same row
    t = found[recipe, BASE]
    assert (t.optimum.best, t.optimum.refined) == (BASE_POINT, True)
    assert t.optimum.log_rate == pytest.approx(base_rate, abs=1e-12)
    assert t.optimum.log_lambda == pytest.approx(base_lambda, abs=1e-12)
    assert t.optimum.best_loss == pytest.approx(2.0)
    assert (t.drift_rate, t.drift_lambda, t.regret, t.own_regret, t.quality) == (0, 0, 0, 0, 0)
    assert t.regret_range == (0.0, 0.0)

  stays = found["stays", WIDE]
  assert (stays.optimum.best, stays.optimum.refined) == (BASE_POINT, True)
  assert stays.drift_rate == pytest.approx(0.0, abs=1e-12)
  assert stays.drift_lambda == pytest.approx(0.0, abs=1e-12)
  assert stays.reused_loss == pytest.approx(1.0)
  # The best recipe at this width, and its tuned pair is the base's: no regret at all.
  assert (stays.regret, stays.own_regret, stays.quality) == (0.0, 0.0, 0.0)
  assert stays.regret_range == (0.0, 0.0)
  assert stays.optimum.seed_rates == (pytest.approx(base_rate), pytest.approx(base_rate))

  moves = found["moves", WIDE]
  assert (moves.optimum.best, moves.optimum.refined) == ((4, 2), True)
  assert moves.optimum.best_loss == pytest.approx(1.05)
  assert moves.optimum.log_rate == pytest.approx(base_rate + 1 / 3, abs=1e-12)
  assert moves.drift_rate == pytest.approx(1 / 3, abs=1e-12)  # one lattice step, in decades
  assert moves.drift_lambda == pytest.approx(0.0, abs=1e-12)
  # At the base pair: 1.05 + 0.1 (one step from its own optimum), against stays' best 1.0.
  assert moves.reused_loss == pytest.approx(1.15)
  assert moves.regret == pytest.approx(0.15)
  # Seed by seed: (1.15 -+ 0.02) - (1.0 -+ 0.01).
  assert moves.regret_range == (pytest.approx(0.14), pytest.approx(0.16))
  assert moves.own_regret == pytest.approx(0.1)
  assert moves.quality == pytest.approx(0.05)


def _table(lines: list[str], title: str) -> dict[str, list[str]]:
  """The rows of the table after the paragraph starting ``title``, split, by recipe."""
  start = next(k for k, line in enumerate(lines) if line.startswith(title))
  header = next(k for k in range(start, len(lines)) if lines[k].startswith("recipe "))
  assert set(lines[header + 1]) == {"-"}
  rows = {}
  for line in lines[header + 2 :]:
    if not line:
      break
    rows[line.split()[0]] = line.split()[1:]
  return rows


def test_joint_tables_print_a_line_per_recipe() -> None:
  summaries = {"stays": "keeps its optimum", "moves": "moves it one rate step"}
  lines = tables.joint_tables(_found(), (BASE, WIDE), RECIPES, summaries)
  assert "  stays           keeps its optimum" in lines
  assert "  moves           moves it one rate step" in lines

  pairs = _table(lines, "Tuned pair")
  assert list(pairs) == list(RECIPES)
  # w=8 rate / lambda, w=16 rate / lambda, drift lr [a, b], drift lambda [a, b].
  assert pairs["stays"][:6] == ["0.01", "/", "0.1", "0.01", "/", "0.1"]
  assert pairs["moves"][:6] == ["0.01", "/", "0.1", "0.022", "/", "0.1"]
  drift = [float(x.strip("[],")) for x in pairs["moves"][6:]]
  assert drift == [0.33, 0.33, 0.33, 0.0, 0.0, 0.0]
  assert [float(x.strip("[],")) for x in pairs["stays"][6:]] == [0.0] * 6

  regret = _table(lines, "Transfer regret")
  assert list(regret) == list(RECIPES)
  assert regret["stays"] == ["+0.000", "[+0.000,", "+0.000]", "+0.000"]
  assert regret["moves"] == ["+0.150", "[+0.140,", "+0.160]", "+0.150"]

  quality = _table(lines, "Tuned quality")
  assert list(quality) == list(RECIPES)
  assert quality["stays"] == ["2.000", "(+0.000)", "1.000", "(+0.000)", "+0.000"]
  assert quality["moves"] == ["2.000", "(+0.000)", "1.050", "(+0.050)", "+0.050"]


def test_joint_tables_mark_an_optimum_that_was_not_refined() -> None:
  found = _found()
  t = found["moves", WIDE]
  found["moves", WIDE] = dataclasses.replace(
    t, optimum=dataclasses.replace(t.optimum, refined=False)
  )
  lines = tables.joint_tables(found, (BASE, WIDE), RECIPES, dict.fromkeys(RECIPES, ""))
  pairs = _table(lines, "Tuned pair")
  assert pairs["moves"][3] == "~0.022"
  assert pairs["stays"][3] == "0.01"


# --- runs.csv ----------------------------------------------------------------------------------


def test_csv_round_trips_a_joint_row(tmp_path: Path) -> None:
  points = [(0, 1), (1, 0), (1, 1), (2, 3)]  # sorted, as run_joint writes them
  pairs = np.array([LATTICE.pair(p) for p in points])
  rng = np.random.default_rng(0)
  metrics = {"test_loss": rng.uniform(1, 3, (4, 2)), "test_acc": rng.uniform(0, 1, (4, 2))}
  row = runs.Row(32, "mup", runs.JOINT, pairs[:, 1], metrics, rates=pairs[:, 0])
  path = tmp_path / "runs.csv"
  runs.write_csv([row], path, ("test_loss", "test_acc"))
  with path.open() as f:
    lines = list(csv.reader(f))
  columns = ["width", "scaling", "mode", "lambda", "learning_rate", "seed", "test_loss", "test_acc"]
  assert lines[0] == columns
  assert len(lines) == 1 + 4 * 2  # a line per point and seed
  [back] = runs.read_csv(path)
  assert (back.width, back.scaling, back.mode) == (32, "mup", runs.JOINT)
  assert back.rates is not None
  np.testing.assert_allclose(back.rates, pairs[:, 0], rtol=1e-5)
  np.testing.assert_allclose(back.lambdas, pairs[:, 1], rtol=1e-5)
  assert [LATTICE.point(r, lam) for r, lam in zip(back.rates, back.lambdas, strict=True)] == points
  assert sorted(back.metrics) == ["test_acc", "test_loss"]
  for name, values in metrics.items():
    np.testing.assert_allclose(back.metrics[name], values, rtol=1e-5)
  assert transfer.losses(back, LATTICE).keys() == transfer.losses(row, LATTICE).keys()


def test_csv_without_learning_rates_reads_as_before(tmp_path: Path) -> None:
  lambdas = np.array([0.01, 0.1, 1.0])
  metrics = {"test_loss": np.array([[2.0, 2.1], [1.5, 1.6], [1.8, 1.9]])}
  rows = [
    runs.Row(8, "-", "unregularised", np.zeros(1), {"test_loss": np.array([[2.5, 2.6]])}),
    runs.Row(8, "fan_avg", "decoupled", lambdas, metrics),
  ]
  path = tmp_path / "runs.csv"
  runs.write_csv(rows, path, ("test_loss",))
  assert path.read_text().splitlines()[0] == "width,scaling,mode,lambda,seed,test_loss"
  plain, decay = runs.read_csv(path)
  assert plain.rates is None and decay.rates is None
  assert (decay.width, decay.scaling, decay.mode) == (8, "fan_avg", "decoupled")
  np.testing.assert_array_equal(decay.lambdas, lambdas)
  np.testing.assert_array_equal(decay.metrics["test_loss"], metrics["test_loss"])
  np.testing.assert_array_equal(plain.lambdas, [0.0])
  np.testing.assert_array_equal(plain.metrics["test_loss"], [[2.5, 2.6]])
  assert runs.joint_rows([plain, decay]) == {}


# --- the driver ----------------------------------------------------------------------------------


def _bowl_study(recipe_shift: dict[str, int]):
  """``train_points`` of a study whose loss is a bowl; each recipe's minimum moves with width."""
  trained: list[tuple[int, str, tuple[int, int]]] = []

  def train_points(width, recipe, rates, lambdas):
    shift = 0 if width == 8 else recipe_shift[recipe]
    values = []
    for rate, lam in zip(rates, lambdas, strict=True):
      i, j = LATTICE.point(rate, lam)
      trained.append((width, recipe, (i, j)))
      values.append([_bowl((i - shift, j)), _bowl((i - shift, j)) + 0.01])
    return {"test_loss": np.array(values)}

  return train_points, trained


def test_run_joint_trains_the_base_once_and_resumes_without_training_again() -> None:
  train_points, trained = _bowl_study({"stays": 0, "moves": 2})
  box = [(i, j) for i in range(4, 7) for j in range(-4, -1)]  # around the minimum (5, -3)
  options = {"widths": (8, 16), "recipes": ("stays", "moves"), "lattice": LATTICE}
  saved: list[int] = []
  rows = runs.run_joint(
    **options,
    base_box=box,
    train_points=train_points,
    max_moves=1,
    on_row=lambda rows: saved.append(len(rows)),
  )
  assert saved == [2, 3, 4]  # after the base (a row per recipe), then after each wider row
  at_base = {recipe for width, recipe, _ in trained if width == 8}
  assert at_base == {"stays"}  # trained once, under the first recipe's name
  grid = runs.joint_rows(rows)
  assert np.array_equal(
    grid["stays", 8].metrics["test_loss"], grid["moves", 8].metrics["test_loss"]
  )
  best = {key: transfer.joint_optimum(row, LATTICE).best for key, row in grid.items()}
  assert best["stays", 16] == MINIMUM
  assert best["moves", 16] == (MINIMUM[0] + 2, MINIMUM[1])  # reached after one move, unsettled
  # Resumed with the rows found and more moves: only the missing neighbours are trained.
  count = len(trained)
  again = runs.run_joint(**options, base_box=box, train_points=train_points, max_moves=3, done=rows)
  new = trained[count:]
  assert new and {recipe for _, recipe, _ in new} == {"moves"}
  assert len(set(new)) == len(new) and not set(new) & set(trained[:count])
  grid = runs.joint_rows(again)
  assert transfer.joint_optimum(grid["moves", 16], LATTICE).refined
  # A third run with nothing left to do trains nothing.
  count = len(trained)
  runs.run_joint(**options, base_box=box, train_points=train_points, max_moves=3, done=again)
  assert len(trained) == count


def test_a_resumed_base_goes_on_from_its_best_point_not_from_the_box() -> None:
  train_points, trained = _bowl_study({"stays": 0, "moves": 0})
  box = [(i, j) for i in range(4, 7) for j in range(-4, -1)]
  options = {"widths": (8, 16), "recipes": ("stays",), "lattice": LATTICE, "max_moves": 2}
  rows = runs.run_joint(**options, base_box=box, train_points=train_points)
  count = len(trained)
  wider_box = [(i, j) for i in range(0, 10) for j in range(-8, 2)]
  runs.run_joint(**options, base_box=wider_box, train_points=train_points, done=rows)
  assert len(trained) == count  # the base's best point is surrounded: nothing to train


# --- the base width's shared rows ---------------------------------------------------------------


def test_a_recipe_that_differs_at_the_base_is_refused_before_anything_is_trained() -> None:
  from width_study.shared_base import AtBase

  train_points, trained = _bowl_study({"stays": 0, "moves": 0})
  plain = AtBase((("hidden/kernel", 1.0, 1.0), ("hidden/bias", 0.0, 1.0)))
  odd = AtBase((("hidden/kernel", 2.0, 1.0), ("hidden/bias", 0.0, 1.0)))
  forms = {"stays": plain, "moves": odd}
  box = [(i, j) for i in range(4, 7) for j in range(-4, -1)]
  options = {"widths": (8, 16), "recipes": ("stays", "moves"), "lattice": LATTICE}
  message = (
    "recipe 'moves' does not train what 'stays' trains at the base width 8 "
    r"\(hidden/kernel has s=2.0, r=1.0 against s=1.0, r=1.0\)"
  )
  with pytest.raises(ValueError, match=message):
    runs.run_joint(
      **options, base_box=box, train_points=train_points, max_moves=1, at_base=forms.get
    )
  assert trained == []
  # The same forms under both names: shared, and the base trained once, under the first name.
  forms["moves"] = AtBase(plain.factors)
  rows = runs.run_joint(
    **options, base_box=box, train_points=train_points, max_moves=1, at_base=forms.get
  )
  assert {recipe for width, recipe, _ in trained if width == 8} == {"stays"}
  grid = runs.joint_rows(rows)
  np.testing.assert_array_equal(
    grid["stays", 8].metrics["test_loss"], grid["moves", 8].metrics["test_loss"]
  )


def test_a_changed_init_is_a_difference_at_the_base() -> None:
  from width_study.shared_base import PLAIN_INIT, AtBase

  factors = (("dense/kernel", 1.0, 1.0),)
  assert AtBase(factors).difference(AtBase(factors)) is None
  assert AtBase(factors).init == PLAIN_INIT
  why = AtBase(factors, "doubled changes them").difference(AtBase(factors))
  assert why == f"its initial weights: doubled changes them, not {PLAIN_INIT}"
  # A leaf one of them lacks differs too.
  more = AtBase((*factors, ("head/kernel", 1.0, 1.0)))
  assert more.difference(AtBase(factors)) == "head/kernel has s=1.0, r=1.0 against s=None, r=None"


def test_every_recipe_is_plain_adamw_at_the_base() -> None:
  from width_study.recipes import RECIPES
  from width_study.shared_base import factors_at_base

  base = {
    "hidden": {"kernel": np.zeros((40, 32)), "bias": np.zeros(32)},
    "out": {"kernel": np.zeros((32, 10)), "bias": np.zeros(10)},
  }
  plain = factors_at_base(base, "none")
  assert plain.factors == (
    ("hidden/bias", 0.0, 1.0),
    ("hidden/kernel", 1.0, 1.0),
    ("out/bias", 0.0, 1.0),
    ("out/kernel", 1.0, 1.0),
  )
  assert {name: recipe.at_base(base) for name, recipe in RECIPES.items()} == dict.fromkeys(
    RECIPES, plain
  )


def test_rows_of_a_scaling_that_differs_at_the_shared_width_are_trained_on_their_own() -> None:
  grid = {"coupled": np.array([0.1, 1.0])}
  plan = runs.study_plan((8, 16), ("none", "odd", "fan_avg"), tuple(grid), lambda s, m: grid[m])
  calls = []

  def train_row(width, scaling, mode, lambdas):
    calls.append((width, scaling, mode))
    return {"test_loss": np.full((len(lambdas), 1), float(len(calls)))}

  rows = runs.run_rows(plan, train_row, shared_width=8, at_base=lambda s: s == "odd")
  # At width 8, fan_avg shares none's row; odd, another optimizer there, is trained.
  assert calls[:3] == [(8, "-", "unregularised"), (8, "none", "coupled"), (8, "odd", "coupled")]
  assert (16, "fan_avg", "coupled") in calls and (8, "fan_avg", "coupled") not in calls
  assert [r.metrics["test_loss"][0, 0] for r in rows[:4]] == [1.0, 2.0, 3.0, 2.0]


# --- the settings: the lambda grids and the lattice, in one place -------------------------------


def _settings():
  sys.path.insert(0, str(ROOT / "examples"))
  try:
    from width_study import grid, settings
  finally:
    sys.path.pop(0)
  return grid, settings


def test_relative_grids_are_one_a_mode_and_absolute_ones_follow_the_factors() -> None:
  import optax_layer_l2 as ll2

  grid, settings = _settings()
  centres = grid.Centres({"coupled": -2.0, "decoupled": 0.5}, {"fan_avg": {"coupled": 1.0}})
  shapes = {"a": {"kernel": np.zeros((8, 16))}, "b": {"kernel": np.zeros((16, 4))}}
  assert centres.centre("sqrt_fan_in", "coupled", False, lambda: shapes) == -2.0
  assert centres.centre("fan_avg", "coupled", True, lambda: shapes) == 1.0
  # Not listed: plain L2's centre over the geometric mean of the absolute factors.
  factors = ll2.scales(shapes, "sqrt_fan_in")
  mean = np.mean(np.log10([factors["a"]["kernel"], factors["b"]["kernel"]]))
  assert centres.centre("sqrt_fan_in", "decoupled", True, lambda: shapes) == pytest.approx(
    0.5 - mean, abs=1e-12
  )
  cfg = settings.LambdaSettings(
    widths=(16, 8), scalings=("none",), seeds=1, points=5, decades=2.0, steps=1, batch_size=1
  )
  lambdas = cfg.grid(centres, "none", "decoupled", lambda: shapes)
  np.testing.assert_allclose(lambdas, np.logspace(-0.5, 1.5, 5), rtol=1e-12)
  assert cfg.base_width() == 8
  assert cfg.relative_to("w") == "every scaling relative to the w=8 model (base=)"
  absolute = dataclasses.replace(cfg, absolute=True)
  assert (absolute.base_width(), absolute.relative_to("w")) == (None, "absolute factors (no base)")


def test_joint_settings_make_the_lattice_and_its_box() -> None:
  _, settings = _settings()
  cfg = settings.JointSettings(
    widths=(64, 32, 128), recipes=("adamw",), seeds=1, steps=1, batch_size=1, rates=(-3.0, -1.333)
  )
  assert cfg.base_width() == 32
  assert cfg.lattice() == LATTICE
  assert cfg.box() == LATTICE.box((-3.0, -1.333), (-1.667, 0.333))


# --- the driver, through a new architecture of one short class ----------------------------------


def _tiny():
  """A two-layer ReLU regression net as a width-study architecture, and its two settings."""
  pytest.importorskip("matplotlib")
  sys.path.insert(0, str(ROOT / "examples"))
  try:
    from width_study import architecture, driver, grid, plots, settings
    from width_study.recipes import RECIPES, Recipe
  finally:
    sys.path.pop(0)
  import jax
  import jax.numpy as jnp
  import optax

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Lambda(settings.LambdaSettings):
    widths: tuple[int, ...] = (4, 8)
    scalings: tuple[str, ...] = ("none", "fan_avg")
    seeds: int = 2
    points: int = 3
    steps: int = 4
    batch_size: int = 8

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Joint(settings.JointSettings):
    widths: tuple[int, ...] = (4, 8)
    recipes: tuple[str, ...] = ("adamw", "mup")
    seeds: int = 2
    steps: int = 4
    batch_size: int = 8
    rates: tuple[float, float] = (-2.0, -1.667)
    lambdas: tuple[float, float] = (-1.0, -0.667)
    max_moves: int = 0

  def rescaled(params, base):
    """The head's init times sqrt(base fan-in / fan-in): 1 at the base."""
    scale = (base["head"]["kernel"].shape[0] / params["head"]["kernel"].shape[0]) ** 0.5
    return params | {"head": {"kernel": params["head"]["kernel"] * scale}}

  def doubled(params, base):
    return jax.tree.map(lambda x: 2 * x, params)

  def loss(params, x, y):
    hidden = jax.nn.relu(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    return jnp.mean((hidden @ params["head"]["kernel"] - y) ** 2)

  class Tiny(architecture.Architecture):
    out = Path("runs/tiny")
    studies = {"joint": (Joint(), Joint()), "lambda": (Lambda(), Lambda())}  # noqa: RUF012
    centres = grid.Centres({"coupled": -2.0, "decoupled": -1.0})
    metrics = ("test_loss", "train_loss")
    recipes = RECIPES | {
      "rescaled": Recipe("none", "inv_fan_in", "mup, its head's init rescaled", rescaled),
      "doubled": Recipe("none", None, "adamw from twice the init", doubled),
    }

    def param_shapes(self, cfg, width):
      return jax.eval_shape(lambda: self.init(cfg, width, jax.random.key(0)))

    def init(self, cfg, width, key):
      first, second = jax.random.split(key)
      hidden = {"kernel": jax.random.normal(first, (3, width)), "bias": jnp.zeros(width)}
      return {"hidden": hidden, "head": {"kernel": jax.random.normal(second, (width, 1))}}

    def load(self, cfg):
      x = jax.random.normal(jax.random.key(7), (40, 3))
      arrays = {"x": x[:32], "y": x[:32].sum(1, keepdims=True), "x_test": x[32:]}
      arrays["y_test"] = x[32:].sum(1, keepdims=True)
      keys = [jax.random.key(100 + s) for s in range(cfg.seeds)]
      batches = jnp.stack([jax.random.randint(k, (cfg.steps, cfg.batch_size), 0, 32) for k in keys])
      return architecture.StudyData(arrays, batches, {"examples": 40})

    def fit(self, cfg, width, scaling, base):
      def fit(tx, params, batches, data):
        def step(carry, batch):
          params, state = carry
          grads = jax.grad(loss)(params, data["x"][batch], data["y"][batch])
          updates, state = tx.update(grads, state, params)
          return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), batches)
        test = loss(params, data["x_test"], data["y_test"])
        return {"test_loss": test, "train_loss": loss(params, data["x"], data["y"])}

      return fit

    def joint_header(self, cfg, info):
      return f"Tiny net on {info.get('examples', '?')} examples."

    def joint_titles(self, cfg):
      return "planes", "optima"

    def lambda_header(self, cfg, info):
      return f"Tiny net, {cfg.relative_to('w')}."

    def lambda_figures(self, rows, cfg, out):
      curves = ("loss_{mode}.png", "{mode}")
      plots.plot_lambda_study(rows, cfg, out, curves, (("test_loss", "loss", 1.0),), "optimal")

  return Tiny(), driver


def _lines(path: Path) -> list[dict[str, str]]:
  with path.open() as f:
    return list(csv.DictReader(f))


def test_the_driver_runs_a_joint_study_of_a_new_architecture(tmp_path: Path) -> None:
  tiny, driver = _tiny()
  driver.main(tiny, ["--quick", "--out", str(tmp_path), "--recipes", "adamw", "mup", "rescaled"])
  lines = _lines(tmp_path / "runs.csv")
  assert list(lines[0]) == [*runs.KEYS[:4], runs.RATE, "seed", "test_loss", "train_loss"]

  def trained(width: int, recipe: str) -> list[list[str]]:
    return [
      list(r.values())[3:] for r in lines if (r["width"], r["scaling"]) == (str(width), recipe)
    ]

  # The base's 2 x 2 box once, shared by the three recipes (the rescaled init is the plain one
  # there); wider, the window around its best point, a recipe's own, and no two alike.
  assert len(trained(4, "adamw")) == 4 * 2 and trained(4, "mup") == trained(4, "rescaled")
  assert trained(4, "adamw") == trained(4, "mup")
  wide = [trained(8, recipe) for recipe in ("adamw", "mup", "rescaled")]
  assert [len(w) for w in wide] == [9 * 2] * 3
  assert wide[0] != wide[1] != wide[2] != wide[0]
  summary = (tmp_path / "summary.txt").read_text()
  assert summary.startswith("Tiny net on 40 examples.\n\nRecipes (each relative to the base width")
  assert "  rescaled        mup, its head's init rescaled" in summary.splitlines()
  assert summary.splitlines()[-1].startswith("wall time ")
  for name in ("planes.png", "joint_optima.png"):
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_a_recipe_whose_init_differs_at_the_base_is_refused(tmp_path: Path) -> None:
  tiny, driver = _tiny()
  message = (
    "recipe 'doubled' does not train what 'adamw' trains at the base width 4 "
    r"\(its initial weights: doubled changes them, not the architecture's init\)"
  )
  with pytest.raises(ValueError, match=message):
    driver.main(tiny, ["--quick", "--out", str(tmp_path), "--recipes", "adamw", "doubled"])
  assert not (tmp_path / "runs.csv").exists()  # refused before anything was trained


def test_the_driver_runs_a_lambda_study_of_a_new_architecture(tmp_path: Path) -> None:
  tiny, driver = _tiny()
  driver.main(tiny, ["--quick", "--study", "lambda", "--out", str(tmp_path)])
  lines = _lines(tmp_path / "runs.csv")
  assert list(lines[0]) == [*runs.KEYS, "test_loss", "train_loss"]
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["study"] == "lambda" and "data" in config
  # Relative to the narrowest width, one grid a mode: 10**centre over 4 decades.
  np.testing.assert_allclose(config["grids"]["fan_avg/decoupled"], np.logspace(-3, 1, 3))
  assert config["grids"]["none/coupled"] == config["grids"]["fan_avg/coupled"]

  def trained(width: int, scaling: str) -> list[list[str]]:
    return [
      list(r.values())[2:] for r in lines if (r["width"], r["scaling"]) == (str(width), scaling)
    ]

  assert len(trained(4, "none")) == 2 * 3 * 2  # two modes, three lambdas, two seeds
  assert trained(4, "none") == trained(4, "fan_avg")  # plain L2 at the base: shared
  assert trained(8, "none") != trained(8, "fan_avg")
  summary = (tmp_path / "summary.txt").read_text()
  assert summary.startswith("Tiny net, every scaling relative to the w=4 model (base=).\n")
  assert "Optimal lambda" in summary and "Best test loss" in summary
  for name in ("loss_coupled.png", "loss_decoupled.png", "optimal_lambda.png"):
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
  # --replot: the same tables from runs.csv and config.json.
  driver.main(tiny, ["--replot", "--out", str(tmp_path)])
  assert (tmp_path / "summary.txt").read_text() == summary.rsplit("\n\n", 1)[0] + "\n"
