"""What the benchmarks record about the machine they ran on."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
from typing import Any, Optional

import jax
import numpy as np
import optax

import optax_l1


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def loadavg() -> Optional[str]:
  """``/proc/loadavg`` as a string, or None where there is none."""
  try:
    with open("/proc/loadavg") as f:
      return f.read().strip()
  except OSError:
    return None


def _version(module: str) -> Optional[str]:
  try:
    return importlib.import_module(module).__version__
  except Exception:  # pylint: disable=broad-except
    return None


def machine_info(command: str) -> dict[str, Any]:
  """Hardware, library versions, date, ``command`` and the load average.

  Callers add ``loadavg_end`` (``loadavg()``) when they are done.
  """
  try:
    cpus_usable = len(os.sched_getaffinity(0))
  except AttributeError:
    cpus_usable = None
  info = {
      "platform": platform.platform(),
      "python": platform.python_version(),
      "cpu_model": cpu_model(),
      "cpu_count": os.cpu_count(),
      "cpus_usable": cpus_usable,
      "jax": jax.__version__,
      "jaxlib": getattr(jax.lib, "__version__", None) or _version("jaxlib"),
      "optax": optax.__version__,
      "optax_l1": optax_l1.__version__,
      "flax": _version("flax"),
      "numpy": np.__version__,
      "sklearn": _version("sklearn"),
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
      # glibc malloc tunables (MALLOC_MMAP_MAX_ etc.): they decide whether
      # XLA:CPU's temporaries are page-faulted in at every step.
      "malloc_env": {k: v for k, v in sorted(os.environ.items())
                     if k.startswith("MALLOC_")},
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "command": command,
      "loadavg_start": loadavg(),
  }
  try:
    with open("/proc/meminfo") as f:
      info["mem_total"] = f.readline().split(":", 1)[1].strip()
  except OSError:
    pass
  return info
