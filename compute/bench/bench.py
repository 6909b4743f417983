"""Measure import time, generation throughput and SFT/DPO seconds per step on this machine.

    PYTHONPATH=compute python compute/bench/bench.py [import] [generate] [sft] [dpo] --work /tmp/srlm-bench

Every measurement goes through the real CLI (``python -m srlm_compute ...``) and
prints one JSON summary line per measurement on stdout. Models are imported into
``WORK/models`` (reused when present, except for the ``import`` measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COMPUTE = Path(__file__).resolve().parents[1]
TOPICS = [
    "the history of the printing press",
    "how volcanoes form",
    "the water cycle",
    "why the sky is blue",
    "the rules of chess",
    "how vaccines work",
    "the life of honeybees",
    "the causes of the French Revolution",
    "how airplanes fly",
    "the benefits of regular exercise",
    "how the internet works",
    "the Roman Empire",
    "photosynthesis",
    "black holes",
    "the invention of the telephone",
    "climate and weather",
]


def run(command: str, job: dict, work: Path) -> tuple[int, list[tuple[float, dict]], float]:
    job_path = work / f"job-{command}-{time.time_ns()}.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ, PYTHONPATH=str(COMPUTE))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "srlm_compute", command, "--job", str(job_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    events = []
    for line in proc.stdout:
        events.append((time.monotonic() - t0, json.loads(line)))
    rc = proc.wait()
    return rc, events, time.monotonic() - t0


def report(**fields):
    print(json.dumps(fields), flush=True)


def ensure_model(name: str, work: Path) -> Path:
    out = work / "models" / name
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        rc, events, _ = run("import-model", {"packaged": name, "output": str(out), "overwrite": True}, work)
        assert rc == 0, events
    return out


def bench_import(work: Path):
    for name in ("smollm2-135m-instruct", "gemma3-270m-instruct"):
        out = work / "models" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        rc, events, wall = run("import-model", {"packaged": name, "output": str(out), "overwrite": True}, work)
        done = events[-1][1]
        report(
            measure="import",
            model=name,
            rc=rc,
            wall_s=round(wall, 1),
            params=done.get("params"),
            architecture=done.get("architecture"),
            chat_template=done.get("chat_template"),
            peak_rss_mb=done.get("peak_rss_mb"),
            notes=done.get("notes"),
        )


def bench_generate(work: Path):
    for name in ("smollm2-135m-instruct", "gemma3-270m-instruct"):
        model = ensure_model(name, work)
        reqs = [
            {
                "id": f"g{i}",
                "messages": [{"role": "user", "content": f"Write a detailed essay about {topic}."}],
                "n": 1,
                "temperature": 0.7,
                "top_p": 0.9,
                "max_new_tokens": 128,
                "seed": i,
            }
            for i, topic in enumerate(TOPICS)
        ]
        inp = work / f"gen-{name}.jsonl"
        inp.write_text("".join(json.dumps(r) + "\n" for r in reqs))
        out = work / f"gen-{name}-out.jsonl"
        out.unlink(missing_ok=True)
        rc, events, wall = run(
            "generate", {"model": str(model), "input": str(inp), "output": str(out), "device": "cpu", "batch_size": 16}, work
        )
        done = events[-1][1]
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        finish = [o["finish_reason"] for r in rows for o in r["outputs"]]
        report(
            measure="generate",
            model=name,
            rc=rc,
            wall_s=round(wall, 1),
            requests=len(rows),
            tokens=done.get("tokens"),
            generate_s=done.get("generate_s"),
            tokens_per_s=done.get("tokens_per_s"),
            length_finishes=finish.count("length"),
            peak_rss_mb=done.get("peak_rss_mb"),
            sample=rows[0]["outputs"][0]["text"][:200] if rows else None,
        )


def bench_train(work: Path, mode: str, batch_size: int, steps: int, grad_ckpt: bool | None = None):
    model = ensure_model("smollm2-135m-instruct", work)
    rows = []
    for i in range(batch_size * steps):
        topic = TOPICS[i % len(TOPICS)]
        prompt = f"Explain {topic} to a curious student in a few sentences. Question {i}."
        good = (f"{topic.capitalize()} is a fascinating subject. " * 6).strip()
        bad = f"I don't know anything about {topic}."
        if mode == "sft":
            rows.append({"id": str(i), "prompt": prompt, "completion": good, "kind": "ift"})
        else:
            rows.append({"id": str(i), "prompt": prompt, "chosen": good, "rejected": bad})
    data = work / f"{mode}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = work / f"{mode}-out"
    job = {
        "mode": mode,
        "model": str(model),
        "data": str(data),
        "output": str(out),
        "batch_size": batch_size,
        "max_steps": steps,
        "device": "cpu",
        "overwrite": True,
        "max_length": 512,
    }
    if grad_ckpt is not None:
        job["gradient_checkpointing"] = grad_ckpt
    rc, events, wall = run("train", job, work)
    step_times = [t for t, e in events if e.get("event") == "progress"]
    per_step = [round(b - a, 1) for a, b in zip(step_times, step_times[1:])]
    done = events[-1][1]
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    report(
        measure=mode,
        model="smollm2-135m-instruct",
        rc=rc,
        batch_size=batch_size,
        steps=done.get("steps"),
        gradient_checkpointing=metrics.get("gradient_checkpointing"),
        tokens_per_step=metrics.get("tokens_per_step"),
        wall_s=round(wall, 1),
        runtime_s=done.get("runtime_s"),
        seconds_per_step_incl_first=done.get("seconds_per_step"),
        seconds_per_later_step=per_step,
        peak_rss_mb=done.get("peak_rss_mb"),
        last=metrics.get("last"),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="*", default=["import", "generate", "sft", "dpo"])
    parser.add_argument("--work", default="/tmp/srlm-bench")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--grad-ckpt", choices=["on", "off"], default=None)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if "import" in args.what:
        bench_import(work)
    if "generate" in args.what:
        bench_generate(work)
    for mode in ("sft", "dpo"):
        if mode in args.what:
            gc = None if args.grad_ckpt is None else args.grad_ckpt == "on"
            bench_train(work, mode, args.batch_size, args.steps, gc)


if __name__ == "__main__":
    main()
