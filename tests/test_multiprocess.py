"""Several processes, as on a TPU pod: 2 processes x 4 CPU devices.

A launcher starts ``tests/_multiprocess_worker.py`` twice on localhost (a
port the OS picks, an overall timeout, every worker killed and its output
shown if one fails). The workers build one 8-device mesh across both
processes, feed each its own rows of the params, run 20 donated jitted
steps of each case and compare with one device (see the worker's
docstring). The tests assert on process 0's JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "_multiprocess_worker.py")
NPROC, DEVICES_PER_PROC = 2, 4
TIMEOUT_S = 240


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(port: int) -> tuple[list[int], list[str], list[str]]:
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                      f"_device_count={DEVICES_PER_PROC}").strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
      [REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  procs = [subprocess.Popen(
      [sys.executable, WORKER, str(port), str(i), str(NPROC)], env=env,
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(NPROC)]
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while any(p.poll() is None for p in procs):
      failed = [p for p in procs if p.poll() not in (None, 0)]
      if failed or time.monotonic() > deadline:
        break
      time.sleep(0.2)
  finally:
    for p in procs:  # a dead peer leaves the others waiting: stop them
      if p.poll() is None:
        p.kill()
    outs = [p.communicate() for p in procs]
  return ([p.returncode for p in procs], [o[0] for o in outs],
          [o[1] for o in outs])


@pytest.fixture(scope="module")
def result():
  for attempt in range(2):  # the port is free when picked; retry if taken
    codes, outs, errs = _launch(_free_port())
    if all(c == 0 for c in codes):
      break
    if attempt == 0 and any("address already in use" in e.lower()
                            for e in errs):
      continue
    report = "\n".join(
        f"--- worker {i}: exit {c}\n{o[-2000:]}\n{e[-4000:]}"
        for i, (c, o, e) in enumerate(zip(codes, outs, errs)))
    pytest.fail(f"multi-process run failed (timeout {TIMEOUT_S} s):\n"
                f"{report}")
  line = [l for l in outs[0].splitlines() if l.startswith("@@JSON@@")]
  assert line, outs[0][-2000:] + errs[0][-2000:]
  return json.loads(line[-1][len("@@JSON@@"):])


def test_two_processes_form_one_mesh(result):
  assert result["processes"] == NPROC
  assert result["devices"] == NPROC * DEVICES_PER_PROC
  assert result["local_devices"] == DEVICES_PER_PROC


@pytest.mark.parametrize("case", ["proximal_l1",
                                  "proximal_group_across_processes",
                                  "chain_prune_global"])
def test_multi_process_steps_match_one_device(result, case):
  res = result["cases"][case]
  assert res["max_abs_diff"] <= 1e-6, res
  assert res["same_zeros"], res
  assert res["sharding_kept"], res
  assert 0 < res["zeros"] < res["size"], res


def test_group_lasso_across_processes_zeroes_whole_columns(result):
  res = result["cases"]["proximal_group_across_processes"]
  assert 0 < res["zero_columns"] < 48, res


def test_global_pruning_count_is_exact_across_processes(result):
  res = result["cases"]["chain_prune_global"]
  assert res["zeros"] == round(0.6 * res["size"])
