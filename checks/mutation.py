"""Mutation testing of `optax_layer_l2/` with the fast tests, in one pytest session.

mutmut (3.x, from PyPI) writes the mutants: every function of the library is
copied once per mutation and reached through a trampoline that picks the
active mutant at call time. mutmut's own runner forks a fresh process and
starts pytest again for each mutant, which pays JAX's start-up, the
collection and every op's compilation again for each of ~1800 mutants. Here
one pytest session collects the tests once and runs them for mutant after
mutant. That is sound because no test keeps a jitted function between runs
(each test builds its own) and the library caches nothing: the active mutant
is reached whenever the library's Python runs, at trace time.

For each mutant only the tests that reach the mutated function run (found by
a first run of all of them, as mutmut does), fastest first, stopping at the
first failure. The selection is the fast `tests/test_core_*.py` files but for
`test_core_properties.py` (hypothesis), the Optax battery
`tests/test_optax_battery.py`, and the library's doctests (the docstrings of
the mutant copies are left out).

Usage, from the repository root, with `pip install mutmut` (3.8):

  python checks/mutation.py [--module _scales ...] [--out results.json]

The library and tests are copied to a temporary folder first, so editing the
tree during the run does not change what is measured. Results are written
after every mutant; `--resume results.json` skips the mutants already in that
file, `--survivors-of results.json` runs only those it did not kill. The
survivors are printed at the end with their diffs.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "optax_layer_l2"
# The fast tests, but for the hypothesis properties: a surviving mutant runs every
# test that reaches it, and with those it took minutes each.
TESTS = [
  *sorted(
    str(path.relative_to(ROOT))
    for path in (ROOT / "tests").glob("test_core_*.py")
    if path.name != "test_core_properties.py"
  ),
  "tests/test_optax_battery.py",
]
# The order of the run: where the maths lives first.
PRIORITY = [
  "_scaling",
  "_fans",
  "_rule",
  "_base",
  "_numeric",
  "_transform",
  "_learning_rate",
  "_penalty",
  "_weight_decay",
  "_masking",
  "_multipliers",
  "_paths",
  "_describe",
  "_scales",
  "_alias",
  "_reference",
]
KILLED = ("killed", "timeout")
MUTANT_COPY = re.compile(r"__mutmut_\d+$")


class MutantTimeout(BaseException):
  """Raised by the alarm when a mutant's tests run far past their usual time."""


def _on_alarm(signum, frame):
  del signum, frame
  raise MutantTimeout


def _log(text: str) -> None:
  print(text, file=sys.stderr, flush=True)


class Driver:
  """A pytest plugin that takes over the run loop: all tests once, then each mutant."""

  def __init__(self, mutants, results, out, diff):
    self.mutants = mutants
    self.results = results
    self.out = out
    self.diff = diff
    self.failed = None

  def pytest_collection_modifyitems(self, items):
    items[:] = [item for item in items if not MUTANT_COPY.search(item.nodeid)]

  @pytest.hookimpl(tryfirst=True)
  def pytest_runtest_makereport(self, item, call):
    """A failure's report without its traceback, which takes seconds to format."""
    if call.excinfo is None or call.excinfo.errisinstance(pytest.skip.Exception):
      return None
    return pytest.TestReport(
      item.nodeid,
      item.location,
      {},
      "failed",
      call.excinfo.exconly(),
      call.when,
      [],
      call.duration,
      call.start,
      call.stop,
    )

  def pytest_runtest_logreport(self, report):
    if report.failed and self.failed is None:
      self.failed = report.nodeid

  def _run(self, session, item):
    """Runs one test as pytest would (fixtures, warnings as errors); True if it passed."""
    self.failed = None
    session.testsfailed = 0
    item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
    return self.failed is None

  @pytest.hookimpl(tryfirst=True)
  def pytest_runtestloop(self, session):
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.state import state
    from mutmut.utils.format_utils import mangled_name_from_mutant_name

    if session.testsfailed:
      raise session.Interrupted(f"{session.testsfailed} errors during collection")
    items = {item.nodeid: item for item in session.items}
    reached: dict[str, set[str]] = {}
    durations: dict[str, float] = {}
    start = time.time()
    set_mutant_under_test("stats")
    for nodeid, item in items.items():
      state()._stats.clear()
      began = time.perf_counter()
      if not self._run(session, item):
        sys.exit(f"{nodeid} fails without a mutant")
      durations[nodeid] = time.perf_counter() - began
      for function in state()._stats:
        reached.setdefault(function, set()).add(nodeid)
    _log(f"{len(items)} tests, {time.time() - start:.0f} s unmutated")

    set_mutant_under_test("fail")
    reaching = set().union(*reached.values())
    if self._run(session, items[min(reaching, key=durations.get)]):
      sys.exit("a test passed with every function failing: the mutants are not reached")

    signal.signal(signal.SIGALRM, _on_alarm)
    for number, (path, name) in enumerate(self.mutants, 1):
      if name in self.results:
        continue
      tests = sorted(reached.get(mangled_name_from_mutant_name(name), ()), key=durations.get)
      record = {"module": path.stem, "tests": len(tests), "status": "no tests"}
      set_mutant_under_test(name)
      nodeid = None
      began = time.time()
      signal.setitimer(signal.ITIMER_REAL, 60 + 20 * sum(map(durations.get, tests)))
      try:
        for nodeid in tests:
          record["status"] = "survived"
          if not self._run(session, items[nodeid]):
            record.update(status="killed", by=nodeid)
            break
      except MutantTimeout:
        record.update(status="timeout", by=nodeid)
      finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
      record["seconds"] = round(time.time() - began, 2)
      if record["status"] not in KILLED:
        with contextlib.chdir(".."):  # mutmut reads `mutants/...`
          record["diff"] = self.diff(name, path=path)
      self.results[name] = record
      self.out.write_text(json.dumps(self.results, indent=1, ensure_ascii=False))
      _log(f"[{number}/{len(self.mutants)}] {record['status']:9} {name}")
    set_mutant_under_test("")
    session.testsfailed = 0  # the mutants' failures are results, not a failed run
    return True


def _copy_tree(workdir: Path) -> None:
  for name in (PACKAGE, "tests"):
    shutil.copytree(ROOT / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy2(ROOT / "pyproject.toml", workdir / "pyproject.toml")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--module", action="append", help="e.g. _scales; default: all")
  parser.add_argument("--out", type=Path, default=Path("mutation-results.json"))
  parser.add_argument("--resume", type=Path, help="a results file whose mutants are skipped")
  parser.add_argument(
    "--survivors-of", type=Path, help="run only the mutants this results file has not killed"
  )
  parser.add_argument("--tests", nargs="+", default=[*TESTS, PACKAGE], help="pytest paths")
  args = parser.parse_args()
  out = args.out.resolve()
  results = json.loads(args.resume.read_text()) if args.resume else {}

  workdir = Path(tempfile.mkdtemp(prefix="mutation-"))
  _copy_tree(workdir)
  os.chdir(workdir)
  _log(f"work folder: {workdir}")

  # mutmut reads its configuration (`[tool.mutmut]`) from the working folder.
  from mutmut.__main__ import create_mutants
  from mutmut.mutation.data import SourceFileMutationData
  from mutmut.mutation.diff_apply import get_diff_for_mutant
  from mutmut.mutation.trampoline import set_mutant_under_test
  from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, walk_mutatable_files

  set_mutant_under_test("mutant_generation")
  os.makedirs("mutants", exist_ok=True)
  copy_src_dir()
  copy_also_copy_files()
  with contextlib.redirect_stdout(sys.stderr):
    create_mutants(1)
  sys.path.insert(0, str(workdir / "mutants"))
  os.environ["PY_IGNORE_IMPORTMISMATCH"] = "1"

  paths = sorted(
    (
      path
      for path in walk_mutatable_files()
      if not args.module or path.stem in args.module or path.name in args.module
    ),
    key=lambda path: PRIORITY.index(path.stem) if path.stem in PRIORITY else len(PRIORITY),
  )
  mutants = []
  for path in paths:
    data = SourceFileMutationData(path=path)
    data.load()
    mutants += [(path, name) for name in data.exit_code_by_key]
  if args.survivors_of:
    earlier = json.loads(args.survivors_of.read_text())
    alive = {name for name, record in earlier.items() if record["status"] not in KILLED}
    mutants = [(path, name) for path, name in mutants if name in alive]
  _log(f"{len(mutants)} mutants in {len(paths)} modules")

  driver = Driver(mutants, results, out, lambda name, path: get_diff_for_mutant(name, path=path))
  log = workdir / "pytest.log"
  with contextlib.chdir("mutants"), open(log, "w") as sink, contextlib.redirect_stdout(sink):
    code = pytest.main(
      ["--rootdir=.", "-p", "no:cacheprovider", "-n", "0", "-q", *args.tests], plugins=[driver]
    )
  if code != 0:
    sys.exit(f"pytest exit code {code}; see {log}")
  _summarise(results)


def _summarise(results: dict) -> None:
  by_module: dict[str, dict[str, int]] = {}
  for record in results.values():
    counts = by_module.setdefault(record["module"], {})
    counts[record["status"]] = counts.get(record["status"], 0) + 1
  print(f"{'module':16} {'total':>6} {'killed':>7} {'timeout':>8} {'survived':>9} {'no tests':>9}")
  for module, counts in sorted(by_module.items()):
    total = sum(counts.values())
    print(
      f"{module:16} {total:6} {counts.get('killed', 0):7} {counts.get('timeout', 0):8} "
      f"{counts.get('survived', 0):9} {counts.get('no tests', 0):9}"
    )
  for name, record in results.items():
    if record["status"] not in KILLED:
      print(f"\n# {name}: {record['status']}\n{record.get('diff', '')}")


if __name__ == "__main__":
  main()
