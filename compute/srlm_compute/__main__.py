"""Command dispatch.

    PYTHONPATH=compute python -m srlm_compute <command> --job JOB.json

Commands: generate, train, import-model, locate-packaged, make-tiny-model; and

    PYTHONPATH=compute python -m srlm_compute serve --model <HF model dir> [--port 8000] ...

an OpenAI-compatible HTTP server (see :mod:`srlm_compute.serve`; it exits 0 on SIGTERM).

Exit codes: 0 success; 2 invalid input (bad job key, missing file, malformed
data line, torn checkpoint); 1 any other failure (including an output lock held
by another process, and a parent that died before we started); 143 / 130 when
stopped by SIGTERM / SIGINT.
Every failure also prints ``{"event":"error","message":...,"kind":...}`` on
stdout (kind "invalid_input" for exit 2, "runtime" otherwise; a cancellation
carries ``"signal": "SIGTERM"|"SIGINT"``).

Every command first asks the kernel to SIGKILL it when its parent process dies
(``prctl(PR_SET_PDEATHSIG)``, Linux; see :func:`srlm_compute.runtime.die_with_parent`).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from .runtime import apply_env_defaults

apply_env_defaults()  # before anything imports transformers / huggingface_hub

from . import progress  # noqa: E402
from .jobs import InvalidInput  # noqa: E402

COMMANDS = ("generate", "train", "import-model", "locate-packaged", "make-tiny-model")


class _ArgParser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit 2 with text on stderr only
        raise InvalidInput(f"usage: python -m srlm_compute <{'|'.join(COMMANDS)}> --job JOB.json ({message})")


def _run(command: str, job: str) -> int:
    # Each command validates its job (cheap) before importing torch / transformers.
    if command == "generate":
        from .generate import main

        return main(job)
    if command == "train":
        from .train import main

        return main(job)
    if command == "import-model":
        from .import_model import main_import

        return main_import(job)
    if command == "locate-packaged":
        from .import_model import main_locate

        return main_locate(job)
    if command == "make-tiny-model":
        from .tiny_model import main

        return main(job)
    raise InvalidInput(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")


def main(argv: list[str] | None = None) -> int:
    from .runtime import LockHeld, die_with_parent, world

    progress.claim_stdout()
    progress.install_signal_handlers()
    try:
        me = world()
    except RuntimeError as exc:
        progress.emit("error", message=str(exc), kind="invalid_input")
        return 2
    if me.distributed:  # under torchrun: only rank 0 reports, except errors (see progress.py)
        progress.set_rank(me.rank)
    if not die_with_parent():
        message = "the parent process is already gone (orphaned at start); not running"
        progress.log(message)
        try:
            progress.emit("error", message=message, kind="runtime")
        except OSError:  # nobody reads stdout any more
            pass
        return 1
    try:
        argv = sys.argv[1:] if argv is None else argv
        if argv[:1] == ["serve"]:
            from .serve import main as serve

            return serve(argv[1:])
        parser = _ArgParser(prog="python -m srlm_compute", add_help=False)
        parser.add_argument("command", choices=COMMANDS)
        parser.add_argument("--job", required=True)
        args = parser.parse_args(argv)
        return _run(args.command, args.job)
    except InvalidInput as exc:
        progress.log(f"invalid input: {exc}")
        progress.emit("error", message=str(exc), kind="invalid_input")
        return 2
    except progress.Cancelled as exc:
        progress.log(str(exc))
        progress.emit("error", message=str(exc), kind="runtime", signal=exc.name)
        return exc.exit_code
    except LockHeld as exc:
        progress.log(str(exc))
        progress.emit("error", message=str(exc), kind="runtime")
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        traceback.print_exc(file=sys.stderr)
        progress.emit("error", message=f"{type(exc).__name__}: {exc}", kind="runtime")
        return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if code in (130, 143) or os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):
        # Cancelled, or a torchrun rank: do not wait on library threads or C++ finalizers
        # (a rank's collective-communication threads can abort the process at interpreter
        # exit); everything we own was written with complete lines / atomic renames already.
        os._exit(code)
    sys.exit(code)
