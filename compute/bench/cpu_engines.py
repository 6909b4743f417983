"""The local engine beside vLLM's CPU build on the same requests, on this machine's CPU.

    npm run bench:engines                                   # SmolLM2-135M
    python compute/bench/cpu_engines.py --models smollm2-135m-instruct gemma3-270m --work /tmp/srlm-engines

Both engines run through the real CLI (``python -m srlm_compute generate``): the local engine on
the compute venv (fp32, ``--threads`` threads, batch sizes ``--batches``), vLLM (``engine.kind
vllm``, bf16, its own scheduling) on the vLLM venv of ``scripts/bootstrap-vllm.sh``. One job per
engine holds two shards, one per stage shape, so each engine starts once per model:

* candidates: 16 chat prompts x n=4 x 128 new tokens (64 sequences; the demo's candidates stage
  at its sampling, temperature 0.7 / top-p 0.9);
* judge: 16 requests x n=3 samples x 128 new tokens over ~600-token prompts that share a long
  rubric prefix (the judge stage's shape; the demo's has 24 requests).

vLLM gets each shape in one call (``requests_per_call`` 16), as a stage with the default 1024 would.

Start-up is launch to the first generated batch (imports, model load, vLLM's compile and KV
cache); tokens/s is per shape after start-up (from the wall-clock times of the shard events).
Prints one JSON line per engine and model, then a table. The models are imported into
``<cache>/models`` as the tests and runs do.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

COMPUTE = Path(__file__).resolve().parents[1]
REPO = COMPUTE.parent
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
# a long shared prefix like the judge's additive 5-point rubric (srlm's real one is in core/rubric.ts)
RUBRIC = (
    "Review the user's question and the corresponding response using the additive 5-point scoring system "
    "described below. Points are accumulated based on the satisfaction of each criterion:\n"
    "- Add 1 point if the response is relevant and provides some information related to the user's inquiry, "
    "even if it is incomplete or contains some irrelevant content.\n"
    "- Add another point if the response addresses a substantial portion of the user's question, but does not "
    "completely resolve the query or provide a direct answer.\n"
    "- Award a third point if the response answers the basic elements of the user's question in a useful way, "
    "regardless of whether it seems to have been written by an AI Assistant or if it has elements typically "
    "found in blogs or search results.\n"
    "- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing "
    "the user's question directly and comprehensively, and is well-organized and helpful, even if there is "
    "slight room for improvement in clarity, conciseness or focus.\n"
    "- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI "
    "Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, "
    "engaging, and insightful answer.\n\n"
)


QUICK = False  # --quick: a quarter of the requests, 32 new tokens (a check that it runs, not a measurement)


def new_tokens() -> int:
    return 32 if QUICK else 128


def candidate_requests() -> list[dict]:
    return [
        {
            "id": f"c{i}",
            "messages": [{"role": "user", "content": f"Explain {t} in a short paragraph."}],
            "n": 4,
            "temperature": 0.7,
            "top_p": 0.9,
            "max_new_tokens": new_tokens(),
            "seed": i,
        }
        for i, t in enumerate(TOPICS[: 4 if QUICK else 16])
    ]


def judge_requests() -> list[dict]:
    out = []
    for i in range(4 if QUICK else 16):
        t = TOPICS[i % len(TOPICS)]
        answer = (f"{t.capitalize()} is a broad subject. " * 14).strip()
        content = (
            f"{RUBRIC}User: Explain {t} in a short paragraph.\n<response>{answer}</response>\n\n"
            "After examining the user's instruction and the response, briefly justify your total score, "
            'then conclude with the score using the format: "Score: <total points>"'
        )
        out.append(
            {
                "id": f"j{i}",
                "messages": [{"role": "user", "content": content}],
                "n": 3,
                "temperature": 0.7,
                "top_p": 0.9,
                "max_new_tokens": new_tokens(),
                "seed": 1000 + i,
            }
        )
    return out


SHAPES = [("candidates", candidate_requests), ("judge (~600-token prompts)", judge_requests)]


def env_paths() -> tuple[str, str | None, Path]:
    env = json.loads((REPO / ".srlm" / "env.json").read_text())
    vllm = os.environ.get("SRLM_VLLM_PYTHON")
    f = REPO / ".srlm" / "vllm.json"
    if not vllm and f.is_file():
        vllm = json.loads(f.read_text())["python"]
    return env["python"], vllm, Path(os.environ.get("SRLM_CACHE_DIR") or env["cacheDir"])


def model_dir(python: str, cache: Path, name: str, work: Path) -> str:
    d = cache / "models" / name
    if not (d / "config.json").is_file():
        d.parent.mkdir(parents=True, exist_ok=True)
        job = work / f"import-{name}.json"
        job.write_text(json.dumps({"packaged": name, "output": str(d)}))
        subprocess.run(
            [python, "-m", "srlm_compute", "import-model", "--job", str(job)],
            check=True,
            env=dict(os.environ, PYTHONPATH=str(COMPUTE)),
            stdout=subprocess.DEVNULL,
        )
    return str(d)


def run_engine(label: str, python: str, model: str, work: Path, engine: dict | None, batch: int, threads: int, env_extra: dict) -> dict:
    d = work / label.replace(" ", "-")
    d.mkdir(parents=True, exist_ok=True)
    shards, names = [], []
    for k, (name, make) in enumerate(SHAPES):
        reqs = make()
        names.append(f"{name} {len(reqs)}x{reqs[0]['n']}x{reqs[0]['max_new_tokens']}")
        inp = d / f"s{k}.jsonl"
        inp.write_text("".join(json.dumps(r) + "\n" for r in reqs))
        out = d / f"s{k}.out.jsonl"
        out.unlink(missing_ok=True)
        shards.append({"input": str(inp), "output": str(out)})
    job = {"model": model, "shards": shards, "device": "cpu", "batch_size": batch, "threads": threads}
    if engine:
        job["engine"] = engine
    job_path = d / "job.json"
    job_path.write_text(json.dumps(job))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [python, "-m", "srlm_compute", "generate", "--job", str(job_path)],
        stdout=subprocess.PIPE,
        stderr=open(d / "stderr.log", "w"),
        text=True,
        env=dict(os.environ, PYTHONPATH=str(COMPUTE), PYTHONUNBUFFERED="1", **env_extra),
    )
    shard_at: dict[int, float] = {}
    done, done_at = {}, 0.0
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["event"] == "shard_done":
            shard_at[ev["shard"]] = time.monotonic() - t0
        elif ev["event"] == "done":
            done, done_at = ev, time.monotonic() - t0
    if proc.wait() != 0:
        raise SystemExit(f"{label}: generate failed (exit {proc.returncode}); see {d / 'stderr.log'}")
    wall = time.monotonic() - t0
    start_s = done_at - done["generate_s"]  # launch to the first batch: imports, load, compile
    tokens = [sum(o["tokens"] for line in Path(s["output"]).read_text().splitlines() for o in json.loads(line)["outputs"]) for s in shards]
    secs = [shard_at[0] - start_s, shard_at[1] - shard_at[0]]
    return {
        "engine": label,
        "start_s": round(start_s, 1),
        "shutdown_s": round(wall - done_at, 1),
        "wall_s": round(wall, 1),
        "shapes": [
            {"shape": name, "tokens": t, "seconds": round(s, 1), "tokens_per_s": round(t / s, 1)} for name, t, s in zip(names, tokens, secs)
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct"])
    ap.add_argument("--batches", nargs="*", type=int, default=[16, 64], help="local engine batch sizes (rows); none: vLLM only")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="local engine threads")
    ap.add_argument("--work", default="/tmp/srlm-cpu-engines")
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a quarter of the requests, 32 new tokens: checks that it runs")
    args = ap.parse_args()
    global QUICK
    QUICK = args.quick
    python, vllm_python, cache = env_paths()
    if not args.no_vllm and not vllm_python:
        raise SystemExit("no vLLM environment: run `bash scripts/bootstrap-vllm.sh` first (or pass --no-vllm)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        model = model_dir(python, cache, name, work)
        runs = [(f"{name} local b{b}", python, None, b) for b in args.batches]
        if not args.no_vllm:
            # one call per shape (requests_per_call = a shard's requests), so each shape's time is its own
            per_call = len(candidate_requests())
            runs.append(
                (
                    f"{name} vllm",
                    vllm_python,
                    {"kind": "vllm", "dtype": "bfloat16", "max_model_len": 2048, "requests_per_call": per_call},
                    0,
                )
            )
        for label, py, engine, batch in runs:
            extra = (
                {
                    "VLLM_CACHE_ROOT": str(cache / "vllm"),
                    "VLLM_CPU_KVCACHE_SPACE": "2",
                    "VLLM_USE_AOT_COMPILE": "0",
                    "TORCHINDUCTOR_CACHE_DIR": str(cache / "vllm" / "inductor"),
                }
                if engine
                else {}
            )
            r = run_engine(label, py, model, work, engine, max(1, batch), args.threads, extra)
            print(json.dumps(r), flush=True)
            rows.append(r)
    print(f"\n{'engine':<36} {'start s':>8}  " + "  ".join(f"{s['shape']:>34}" for s in rows[0]["shapes"]))
    for r in rows:
        cells = "  ".join(f"{s['tokens_per_s']:>8.1f} tok/s ({s['tokens']} in {s['seconds']:.0f} s)".rjust(34) for s in r["shapes"])
        print(f"{r['engine']:<36} {r['start_s']:>8.1f}  {cells}")


if __name__ == "__main__":
    main()
