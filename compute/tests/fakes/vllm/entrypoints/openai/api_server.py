"""A FAKE of vLLM's OpenAI server entry point (``python -m vllm.entrypoints.openai.api_server``).

It is not vLLM: it accepts the flags srlm's resident pool passes (backends/resident-compute.ts
``vllmServerArgs``), appends them as one JSON line ``{"server_argv": [...]}`` to the file named
by ``FAKE_VLLM_LOG``, waits ``FAKE_VLLM_START_DELAY`` seconds (a model load, so the pool's
readiness polling is exercised), then serves with srlm's own ``serve`` command on CPU over the
``--model`` directory (a real model), under the ``--served-model-name``. vLLM-only flags
(tensor parallelism, memory share, dtype, context length) are recorded and otherwise ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fake vllm api_server")
    p.add_argument("--model", required=True)
    p.add_argument("--served-model-name", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--max-model-len", type=int, default=None)
    args = p.parse_args(argv)
    log = os.environ.get("FAKE_VLLM_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"server_argv": argv, "pid": os.getpid()}) + "\n")
    time.sleep(float(os.environ.get("FAKE_VLLM_START_DELAY", "0")))
    from srlm_compute.serve import main as serve

    return serve(
        [
            "--model",
            args.model,
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--threads",
            "2",
            "--served-model-name",
            args.served_model_name,
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
