"""Kill what a process leaves behind when it dies: its descendants.

    python -m srlm_compute.reaper    (started by the process to watch: see ``start``)

vLLM runs its engine core and model worker in processes of their own. When the process that
made them is SIGKILLed (the OOM killer, a killed worker taking its tethered server along), they
are orphaned and keep their memory; ``PR_SET_PDEATHSIG`` does not reach them (it is not
inherited across fork). The reaper is a child of the watched process: every ``INTERVAL`` s it
notes the watched process's descendants (pid and start time, from /proc); once its parent is
gone it SIGKILLs those that are still the same processes, and exits. Linux only (elsewhere
``start`` does nothing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

INTERVAL = 0.5


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, start time) of every process, from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(name)] = (int(fields[1]), fields[19])  # ppid, starttime
    return out


def descendants(pid: int, procs: dict[int, tuple[int, str]]) -> dict[int, str]:
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(p)
    out, todo = {}, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out[p] = procs[p][1]
        todo.extend(children.get(p, []))
    return out


def watch(parent: int) -> None:
    me = os.getpid()
    seen: dict[int, str] = {}
    while os.getppid() == parent:
        seen = {p: t for p, t in descendants(parent, _processes()).items() if p != me}
        time.sleep(INTERVAL)
    now = _processes()
    for p, started in seen.items():
        if now.get(p, (0, None))[1] == started:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def start() -> None:
    """Start a reaper for this process (the caller's descendants are killed when it dies)."""
    if not sys.platform.startswith("linux"):
        return
    subprocess.Popen(
        [sys.executable, "-c", "import sys; from srlm_compute.reaper import watch; watch(int(sys.argv[1]))", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        close_fds=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(__file__)), os.environ.get("PYTHONPATH", "")] if p),
        },
    )
