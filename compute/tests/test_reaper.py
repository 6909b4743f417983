"""srlm_compute.reaper: the descendants of a SIGKILLed process die with it (as vLLM's engine core must)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import cli_env

# a parent that starts a reaper (or not), then a child that starts a grandchild; prints their pids, then waits
PARENT = """
import subprocess, sys, time
from srlm_compute import reaper
if sys.argv[1] == "reaper":
    reaper.start()
code = "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print(g.pid, flush=True); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
grandchild = int(child.stdout.readline())
time.sleep(1.5)  # the reaper has seen them
print(child.pid, grandchild, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def orphans_after_sigkill(with_reaper: bool) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, "reaper" if with_reaper else "none"],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
        start_new_session=True,
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        return [p for p in pids if alive(p)]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc (Linux only)")
def test_descendants_of_a_sigkilled_process_die_with_it():
    assert orphans_after_sigkill(with_reaper=False) != []  # without the reaper they outlive it
    assert orphans_after_sigkill(with_reaper=True) == []
