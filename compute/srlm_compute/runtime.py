"""Shared runtime helpers: environment defaults, library quieting, device and threads,
orphan safety (parent-death signal) and exclusive output locks.

Orphan safety: :func:`die_with_parent` runs at the start of every CLI command. On
Linux it sets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` so the kernel SIGKILLs this
process when the process that spawned it (the Temporal worker) dies, even by
SIGKILL. If the parent is already gone by then (``getppid()`` is 1, or differs
from the value read just before the prctl call), the command exits at once with
code 1. Caveats: the signal follows the parent *thread* that spawned us, and a
parent that died before the interpreter started may have been replaced by a
sub-reaper that is not pid 1 (then nothing can tell).

Output locks: :func:`lock_output` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
``<output>.lock`` and keeps the descriptor open for the life of the process (the
kernel drops the lock when the process ends, however it ends). A lock held by
another process is retried for ``SRLM_LOCK_WAIT_S`` seconds (default 30), then
:class:`LockHeld` is raised (exit 1, ``kind: "runtime"``). The ``.lock`` files
are left in place on purpose: deleting a lock file races with a process that
has just opened it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

# Never reach a model hub at run time; every model is a local directory.
ENV_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TQDM_DISABLE": "1",
    # OpenMP worker threads sleep instead of spinning at barriers. On a small box shared with the
    # orchestrator (2 cores here), spinning threads made torch ops up to 5x slower whenever another
    # process held a core; passive waiting costs a few percent when the machine is idle.
    "OMP_WAIT_POLICY": "PASSIVE",
}


def apply_env_defaults() -> None:
    """Set offline/quiet environment defaults; must run before transformers is imported."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def quiet_libraries(datasets: bool = True) -> None:
    """Silence progress bars and most warnings of transformers / datasets / TRL (they go to stderr anyway).

    ``datasets=False`` skips importing ``datasets`` (about a second) for commands that never use it.
    """
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    if datasets:
        try:
            import datasets as hf_datasets

            hf_datasets.logging.set_verbosity_error()
            hf_datasets.disable_progress_bars()
        except ImportError:  # pragma: no cover
            pass
    for name in ("trl", "accelerate", "torch.distributed", "gguf"):
        logging.getLogger(name).setLevel(logging.ERROR)


def resolve_device(device: str) -> str:
    """Map the job's ``device`` ("auto" | "cpu" | "cuda") to a torch device string."""
    import torch

    from .jobs import InvalidInput

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidInput('device "cuda" requested but CUDA is not available')
    return device


def set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fresh_partial_dir(output: str) -> str:
    """Return ``output + ".partial"``, emptied of any leftover from a killed run."""
    import shutil

    partial = output.rstrip("/\\") + ".partial"
    if os.path.isdir(partial):
        shutil.rmtree(partial)
    elif os.path.exists(partial):
        os.remove(partial)
    os.makedirs(partial)
    return partial


def publish_dir(partial: str, output: str) -> None:
    """Atomically move a finished ``.partial`` directory into place (replacing ``output`` if present)."""
    import shutil

    output = output.rstrip("/\\")
    if os.path.exists(output):
        old = output + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        os.rename(output, old)
        os.rename(partial, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, output)


def remove_partial(output: str) -> None:
    import shutil

    partial = output.rstrip("/\\") + ".partial"
    if os.path.isdir(partial):
        shutil.rmtree(partial, ignore_errors=True)


# --------------------------------------------------------------------------- orphan safety

PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL us when our parent dies; False when the parent is already gone.

    A no-op returning True off Linux or when libc / prctl is unavailable (logged).
    """
    if not sys.platform.startswith("linux"):
        return True
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError) as exc:  # pragma: no cover - exotic libc
        print(f"warning: prctl unavailable ({exc}); this process will not die with its parent", file=sys.stderr)
        return True
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:  # pragma: no cover
        err = ctypes.get_errno()
        print(f"warning: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}", file=sys.stderr)
        return True
    now = os.getppid()
    return not (now == 1 or now != parent)


# --------------------------------------------------------------------------- output locks

LOCK_WAIT_ENV = "SRLM_LOCK_WAIT_S"
DEFAULT_LOCK_WAIT_S = 30.0
_HELD_LOCKS: dict[str, int] = {}  # lock path -> open fd, kept for the life of the process


class LockHeld(RuntimeError):
    """Another process holds an output's lock (exit 1)."""


def lock_wait_s() -> float:
    raw = os.environ.get(LOCK_WAIT_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_LOCK_WAIT_S
    except ValueError:
        return DEFAULT_LOCK_WAIT_S


def lock_output(output: str, wait_s: float | None = None) -> str:
    """Take the exclusive lock ``<output>.lock`` (see the module docstring); returns the lock path."""
    import fcntl

    path = os.path.abspath(output.rstrip("/\\")) + ".lock"
    if path in _HELD_LOCKS:
        return path
    wait = lock_wait_s() if wait_s is None else wait_s
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait
    announced = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(f"another process holds the lock {path} (waited {wait:g} s); is another job writing {output}?") from None
                if not announced:
                    print(f"waiting up to {wait:g} s for the lock {path} (held by another process)", file=sys.stderr, flush=True)
                    announced = True
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())) or 0.01)
    except BaseException:
        os.close(fd)
        raise
    # Record who holds it (for humans); the lock itself is the flock, not the contents.
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    _HELD_LOCKS[path] = fd
    return path


def release_locks() -> None:
    """Drop every lock this process holds (process exit does the same)."""
    while _HELD_LOCKS:
        _, fd = _HELD_LOCKS.popitem()
        try:
            os.close(fd)
        except OSError:
            pass


# --------------------------------------------------------------------------- distributed (torchrun)


class World:
    """This process' place in a torchrun launch, from the environment torchrun sets.

    ``WORLD_SIZE`` unset or 1: a single process (rank 0 of 1).
    """

    def __init__(self, rank: int = 0, local_rank: int = 0, size: int = 1):
        self.rank, self.local_rank, self.size = rank, local_rank, size

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, local_rank={self.local_rank}, size={self.size})"


def world() -> World:
    def read(name: str, default: int) -> int:
        raw = os.environ.get(name, "")
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise RuntimeError(f"environment variable {name}={raw!r} is not a non-negative integer (set by torchrun)")
        return value

    size = read("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    rank, local_rank = read("RANK", 0), read("LOCAL_RANK", 0)
    if rank >= size:
        raise RuntimeError(f"RANK={rank} is not below WORLD_SIZE={size}")
    return World(rank, local_rank, size)


def barrier() -> None:
    """Wait for every rank (no-op outside an initialised process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def leave_process_group() -> None:
    """Tear down this rank's process group (if any) before the process exits.

    Not a collective: each rank calls it when it is done, so a rank never waits on rank 0
    writing a large model (NCCL's watchdog would abort a barrier that waits too long).
    Leaving the group to the interpreter's exit lets gloo's / NCCL's threads die in C++
    destructors, which aborts the rank ("terminate called without an active exception").
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
