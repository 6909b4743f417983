"""torchrun for srlm_compute jobs: one event stream and srlm's exit codes for a multi-process job.

    PYTHONPATH=compute python -m srlm_compute.launch [torchrun options] -m srlm_compute train --job JOB.json

e.g. ``--standalone --nproc-per-node 2`` on one host, or ``--nnodes 4 --nproc-per-node 8
--node-rank $I --master-addr HOST --master-port 29500`` on each of four nodes. The options are
torchrun's (``torch.distributed.run``), passed through unchanged.

Why not torchrun directly: torchrun exits 1 whatever its workers exited with, and every rank
shares its stdout. This wrapper

* validates the job first (no torch import): a bad job is one ``error`` event and exit 2
  before any rank starts;
* runs ``python -m torch.distributed.run`` with the same arguments as its child (in its process
  group; killed with it: PDEATHSIG) and reads the ranks' stdout. Ranks other than 0 write only
  ``error`` events (:func:`srlm_compute.progress.set_rank`); everything else is passed through
  as it comes, so the stream has one ``start``, one set of ``progress`` / ``checkpoint`` lines
  and one ``done``;
* holds back the ranks' ``error`` events and, when the launch fails, writes ONE: the root cause
  (the first error that is not a cancellation: when one rank fails torchrun stops the others
  with SIGTERM, and their "cancelled" errors are only consequences), prefixed with its rank;
* exits like a single process would: 0 (on a node other than ``--node-rank 0``, which sees no
  ``done``: its ranks print only errors, when torchrun exits 0 without one); 2 when the root cause is invalid input (bad job key,
  ``batch_size`` not divisible by the number of ranks, malformed data line, torn checkpoint);
  143 / 130 when it was itself stopped by SIGTERM / SIGINT (forwarded to torchrun, which stops
  the ranks); 1 otherwise (a rank that died without an error event, e.g. SIGKILL or OOM,
  included: see stderr, where torchrun's failure report and the ranks' logs go).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from .runtime import apply_env_defaults

apply_env_defaults()

from . import progress  # noqa: E402
from .jobs import InvalidInput, TrainJob, load_job  # noqa: E402

COMMANDS = {"train": TrainJob}


def split_argv(argv: list[str]) -> tuple[list[str], str, str]:
    """(torchrun options, command, job path) from ``[opts...] -m srlm_compute <command> --job <path>``."""
    usage = "usage: python -m srlm_compute.launch [torchrun options] -m srlm_compute train --job JOB.json"
    try:
        at = next(i for i in range(len(argv) - 1) if argv[i] == "-m" and argv[i + 1] == "srlm_compute")
    except StopIteration:
        raise InvalidInput(f"{usage} (no '-m srlm_compute')") from None
    rest = argv[at + 2 :]
    if len(rest) != 3 or rest[1] != "--job":
        raise InvalidInput(f"{usage} (got {' '.join(rest) or 'nothing'} after '-m srlm_compute')")
    if rest[0] not in COMMANDS:
        raise InvalidInput(f"{usage} (command {rest[0]!r} cannot run under torchrun; only: {', '.join(COMMANDS)})")
    return argv[:at], rest[0], rest[2]


def node_rank(options: list[str]) -> int:
    """This node's ``--node-rank`` among torchrun's options (``--node-rank N``, ``--node-rank=N``,
    ``--node_rank``); 0 when absent or not a number (torchrun rejects the latter itself)."""
    for i, opt in enumerate(options):
        for name in ("--node-rank", "--node_rank"):
            if opt == name and i + 1 < len(options):
                value = options[i + 1]
            elif opt.startswith(name + "="):
                value = opt[len(name) + 1 :]
            else:
                continue
            return int(value) if value.isdigit() else 0
    return 0


def _pdeathsig() -> None:  # in the child, before exec: torchrun dies with us
    from .runtime import die_with_parent

    die_with_parent()


def root_cause(errors: list[dict]) -> dict | None:
    """The error that explains a failed launch: the first one that is not a cancellation."""
    for ev in errors:
        if not ev.get("signal"):
            return ev
    return errors[0] if errors else None


def main(argv: list[str] | None = None) -> int:
    from .runtime import die_with_parent

    argv = sys.argv[1:] if argv is None else argv
    progress.claim_stdout()
    if not die_with_parent():
        progress.emit("error", message="the parent process is already gone (orphaned at start); not running", kind="runtime")
        return 1
    try:
        options, command, job_path = split_argv(argv)
        load_job(COMMANDS[command], job_path)  # the ranks check it again; this catches a bad job before they start
    except InvalidInput as exc:
        progress.log(f"invalid input: {exc}")
        progress.emit("error", message=str(exc), kind="invalid_input")
        return 2

    child = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *options, "-m", "srlm_compute", command, "--job", job_path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
    )
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        try:
            child.send_signal(signum)  # torchrun stops its workers on SIGTERM / SIGINT
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    errors: list[dict] = []
    saw_done = []
    assert child.stdout is not None
    for raw in child.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if not line:
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            ev = None
        if not isinstance(ev, dict) or "event" not in ev:
            progress.log(f"(stdout) {line}")  # a library writing to a rank's stdout: keep the stream clean
            continue
        if ev["event"] == "error":
            errors.append(ev)
            continue
        if ev["event"] == "done":
            saw_done.append(ev)
        event = ev.pop("event")
        progress.emit(event, **ev)
    rc = child.wait()

    if received:
        sig = received[0]
        name = signal.Signals(sig).name
        progress.emit("error", message=f"cancelled by {name}", kind="runtime", signal=name)
        return 128 + sig
    # rank 0 (and with it the one 'done') runs on node 0; another node's ranks print only errors
    if rc == 0 and not errors and (saw_done or node_rank(options) > 0):
        return 0
    cause = root_cause(errors)
    if cause is None:
        message = (
            f"torchrun exited {rc} and no rank reported an error (a rank was killed or crashed; see torchrun's report on stderr)"
            if rc != 0
            else "torchrun exited 0 but rank 0 reported no 'done'"
        )
        progress.emit("error", message=message, kind="runtime")
        return 1
    fields = {k: v for k, v in cause.items() if k not in ("event", "message")}
    rank = cause.get("rank")
    message = f"rank {rank}: {cause.get('message')}" if rank is not None else str(cause.get("message"))
    progress.emit("error", message=message, **fields)
    return 2 if cause.get("kind") == "invalid_input" else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
