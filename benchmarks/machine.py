"""The machine a run measured on, as a table."""

import os
import platform

import jax
import optax

import optax_layer_l2 as ll2
from benchmarks.markdown import table


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def memory_gib() -> str:
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemTotal:"):
          return f"{int(line.split()[1]) / 2**20:.0f} GiB"
  except OSError:
    pass
  return "unknown"


def load() -> str:
  try:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "unknown"


def machine(load_before: str) -> str:
  rows = [
    ["CPU", cpu_model()],
    ["logical cores", str(os.cpu_count())],
    ["memory", memory_gib()],
    ["system", f"{platform.system()} {platform.machine()}"],
    ["device", f"{jax.default_backend()} ({jax.devices()[0].device_kind})"],
    ["Python", platform.python_version()],
    ["jax / jaxlib", f"{jax.__version__} / {jax.lib.__version__}"],
    ["optax", optax.__version__],
    ["optax_layer_l2", ll2.__version__],
    ["load average (1, 5, 15 min) before", load_before],
    ["load average (1, 5, 15 min) after", load()],
  ]
  return table(["", ""], rows)
