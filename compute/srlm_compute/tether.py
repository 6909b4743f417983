"""Run another program that dies with the process that started us.

    python -m srlm_compute.tether -- <program> [args...]

Sets ``PR_SET_PDEATHSIG`` (SIGKILL) and replaces this process with the program (``execvp``;
the setting survives exec), so a server srlm starts but did not write, such as vLLM's OpenAI
server, cannot outlive a worker that is killed without a chance to stop it. Exits 127 when
the program cannot be run, and 1 at once when the parent is already gone. The program's own
children are killed when it dies (:mod:`srlm_compute.reaper`).
"""

from __future__ import annotations

import os
import sys

from . import reaper
from .runtime import die_with_parent


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m srlm_compute.tether -- <program> [args...]", file=sys.stderr)
        return 2
    if not die_with_parent():
        return 1
    # the program's own children (vLLM's engine core) do not inherit PDEATHSIG: a reaper kills them when it dies
    reaper.start()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"tether: cannot run {argv[0]}: {exc}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
