"""Orphan safety (parent-death signal) and exclusive output locks; none of these load a model."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import cli_args, cli_env, parse_events, run_cli, write_job, write_jsonl

PARENT = """
import subprocess, sys, time
err = open(sys.argv[1], "w")
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=err)
print(child.pid, flush=True)
time.sleep(600)
"""


def _model_stub(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def _hold_lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie is dead, just not reaped
    except FileNotFoundError:
        return True


def test_cli_dies_when_its_parent_is_killed(tmp_path):
    model = _model_stub(tmp_path)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "x"}])
    out = tmp_path / "out.jsonl"
    lock_fd = _hold_lock(str(out) + ".lock")  # keeps the CLI busy (waiting for the lock) after its prctl call
    job_path = write_job("generate", {"model": str(model), "input": str(inp), "output": str(out)}, tmp_path)
    err = tmp_path / "child.stderr"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(err), *cli_args("generate", job_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(SRLM_LOCK_WAIT_S="120"),
    )
    child = None
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 30
        while "waiting up to" not in (err.read_text() if err.exists() else ""):
            assert time.monotonic() < deadline, "the CLI never reached the lock wait"
            assert not _gone(child), err.read_text()
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        t0 = time.monotonic()
        while not _gone(child) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert _gone(child), "the CLI outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
        os.close(lock_fd)


def test_orphaned_at_start_refuses_to_run(tmp_path):
    # Simulate "our parent was already gone before prctl took effect": getppid() reports init.
    code = (
        "import os, sys; os.getppid = lambda: 1\n"
        "from srlm_compute.__main__ import main\n"
        f"sys.exit(main(['generate', '--job', {str(tmp_path / 'job.json')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    ev = parse_events(proc.stdout)[-1]
    assert ev["event"] == "error" and ev["kind"] == "runtime" and "parent process is already gone" in ev["message"]


def test_generate_fails_when_the_output_lock_stays_held(tmp_path):
    model = _model_stub(tmp_path)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "x"}])
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "outp')  # must stay untouched: nothing is read or cut without the lock
    fd = _hold_lock(str(out) + ".lock")
    try:
        t0 = time.monotonic()
        res = run_cli("generate", {"model": str(model), "input": str(inp), "output": str(out)}, tmp_path, env={"SRLM_LOCK_WAIT_S": "0.5"})
        waited = time.monotonic() - t0
    finally:
        os.close(fd)
    assert res.rc == 1, res.stderr[-2000:]
    err = res.last()
    assert err["event"] == "error" and err["kind"] == "runtime"
    assert "another process holds the lock" in err["message"] and str(out) + ".lock" in err["message"]
    assert waited >= 0.5
    assert out.read_text() == '{"id": "a", "outp'


def test_train_fails_when_the_output_lock_stays_held(tmp_path):
    model = _model_stub(tmp_path)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    out = tmp_path / "trained"
    Path(str(out) + ".partial").mkdir()  # a leftover: must not be removed by a process without the lock
    fd = _hold_lock(str(out) + ".lock")
    try:
        res = run_cli(
            "train", {"mode": "sft", "model": str(model), "data": str(data), "output": str(out)}, tmp_path, env={"SRLM_LOCK_WAIT_S": "0.3"}
        )
    finally:
        os.close(fd)
    assert res.rc == 1, res.stderr[-2000:]
    assert res.last()["kind"] == "runtime" and "another process holds the lock" in res.last()["message"]
    assert Path(str(out) + ".partial").is_dir()
