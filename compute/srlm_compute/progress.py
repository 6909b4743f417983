"""JSON-lines event stream on stdout, and the process plumbing around it.

stdout carries ONLY JSON objects, one per line, flushed as written:

    {"event": "start", ...}
    {"event": "progress", ...}
    {"event": "done", ...}
    {"event": "error", "message": "...", "kind": "invalid_input" | "runtime"}

To keep that promise even when a library prints (Python ``print`` or C code
writing to fd 1), :func:`claim_stdout` moves the real stdout to a private file
descriptor and points fd 1 (and ``sys.stdout``) at stderr. Human logs go to
stderr.

Under torchrun (``WORLD_SIZE`` > 1) every rank shares the launcher's stdout:
:func:`set_rank` makes ranks other than 0 write only ``error`` events (each
error event then carries ``"rank"``), so the stream has one ``start``, one set
of ``progress`` / ``checkpoint`` lines and one ``done``; ``srlm_compute.launch``
reduces the ranks' errors to one.

Signals: :func:`install_signal_handlers` turns SIGTERM / SIGINT into a
:class:`Cancelled` exception raised in the main thread, so work stops within
one Python bytecode (in practice: after the running torch op). The CLI maps it
to exit code 143 (SIGTERM) or 130 (SIGINT).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from typing import Any

_EVENT_FD: int | None = None
_LOCK = threading.Lock()
_RANK: int | None = None  # None: not a distributed run


def set_rank(rank: int | None) -> None:
    """Declare this process' global rank in a distributed run (None: a single process)."""
    global _RANK
    _RANK = rank


class Cancelled(BaseException):
    """Raised in the main thread when SIGTERM or SIGINT arrives.

    A BaseException (like KeyboardInterrupt) so that ``except Exception``
    blocks in libraries do not swallow it.
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"cancelled by {signal.Signals(signum).name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def claim_stdout() -> None:
    """Reserve the process' stdout for events; everything else goes to stderr."""
    global _EVENT_FD
    if _EVENT_FD is not None:
        return
    sys.stdout.flush()
    _EVENT_FD = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf become null, tensors/numpy scalars become numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # torch / numpy scalar
        try:
            return _clean(value.item())
        except (ValueError, RuntimeError):
            return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def emit(event: str, **fields: Any) -> None:
    """Write one event line to the event stream (stdout) and flush it.

    In a distributed run only rank 0 writes, except ``error`` events, which every rank writes
    (with its ``rank``) so that a failure on any rank is reported.
    """
    if _RANK is not None:
        if event != "error" and _RANK != 0:
            return
        if event == "error":
            fields = {**fields, "rank": _RANK}
    obj = {"event": event, **_clean(fields)}
    line = (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    with _LOCK:
        fd = _EVENT_FD if _EVENT_FD is not None else sys.stdout.fileno()
        if _EVENT_FD is None:
            sys.stdout.flush()
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def log(message: str) -> None:
    """A human log line on stderr."""
    print(message, file=sys.stderr, flush=True)


def install_signal_handlers() -> None:
    def handler(signum, _frame):
        # Ignore repeats while we unwind; the first one wins.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Cancelled(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
