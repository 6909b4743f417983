"""tether: a program started through ``python -m srlm_compute.tether`` dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import cli_env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_program_dies_with_the_parent():
    # parent: starts `sleep` through the tether, prints the tethered pid, then waits forever
    parent_code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-m', 'srlm_compute.tether', '--', 'sleep', '120'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, env=cli_env())
    pid = int(parent.stdout.readline())
    # exec replaced the tether with sleep: same pid, now running sleep
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().split(b"\0")[0] == b"sleep":
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the tether did not exec the program")
    assert _alive(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the tethered program outlived its parent"


def test_a_program_that_cannot_run_exits_127():
    res = subprocess.run(
        [sys.executable, "-m", "srlm_compute.tether", "--", "/nonexistent/program"], capture_output=True, text=True, env=cli_env()
    )
    assert res.returncode == 127
    assert "cannot run /nonexistent/program" in res.stderr


def test_no_program_is_a_usage_error():
    res = subprocess.run([sys.executable, "-m", "srlm_compute.tether"], capture_output=True, text=True, env=cli_env())
    assert res.returncode == 2
    assert "usage" in res.stderr
