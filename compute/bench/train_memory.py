"""Peak RSS per rank of DPO training on CPU, 2 ranks (gloo), before and after the memory options.

    PYTHONPATH=compute python compute/bench/train_memory.py --work /tmp/srlm-mem [--tokenizer DIR]

Two measurements, each a configuration "before" (today's defaults: fp32 weights, a resident
fp32 reference copy) and "after" (``precision: "bf16"``, ``reference: "precomputed"``):

* ``load``: a random Llama of 1.04B parameters (hidden 2048, 14 layers, 16 heads, SmolLM2's
  49152-token vocabulary, tied embeddings). Each of 2 ranks under torchrun runs train.py's own
  ``load_models``, ``trainer_arguments`` and ``make_trainer`` (which loads TRL's reference copy,
  or runs the precompute pass), then reports its peak RSS; no optimizer step. A full step does
  not fit here: fp32 weights, gradients, DDP's gradient buckets and AdamW are 20 bytes per
  parameter, 2 x 21 GB for two ranks of this model, on a 24 GiB machine shared with others.
* ``step``: the whole train.py job (``srlm_compute.launch``, 2 ranks, one AdamW step of DPO) on a
  184M model (hidden 1024, 8 layers), where both configurations fit; peak RSS per rank from
  ``metrics.json``'s ``peak_rss_mb_per_rank``.

A configuration whose estimated need exceeds MemAvailable is skipped with a line saying so
(the machine is shared; an OOM kill would hit someone else's process); ``--ranks 1 --config
before --only load`` then gives one rank's figure of the 1B "before", which does not depend on
the number of ranks (DDP replicates: every rank loads the same). One JSON line per
measurement, then a summary with the after/before ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

COMPUTE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(COMPUTE))

SHAPES = {"load": {"hidden_size": 2048, "layers": 14, "heads": 16}, "step": {"hidden_size": 1024, "layers": 8, "heads": 16}}
CONFIGS = {"before": {}, "after": {"precision": "bf16", "reference": "precomputed"}}
PAIRS = [
    {
        "id": str(i),
        "prompt": f"Explain topic number {i} in one sentence.",
        "chosen": f"Topic {i} is explained simply here.",
        "rejected": f"I do not know anything about {i}.",
    }
    for i in range(4)
]


def mem_available_gb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    return 0.0


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(COMPUTE), OMP_NUM_THREADS="1")


def make_model(tokenizer: str, out: Path, shape: dict) -> int:
    if not (out / "model.safetensors").is_file():
        job = out.parent / f"{out.name}.job.json"
        job.write_text(json.dumps({"tokenizer": tokenizer, "output": str(out), "seed": 0, "overwrite": True, **shape}))
        subprocess.run(
            [sys.executable, "-m", "srlm_compute", "make-tiny-model", "--job", str(job)], check=True, env=env(), stdout=subprocess.DEVNULL
        )
    from safetensors import safe_open

    total = 0
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            n = 1
            for d in f.get_slice(key).get_shape():
                n *= d
            total += n
    return total


def train_job(model: Path, data: Path, out: Path, extra: dict) -> dict:
    return {
        "mode": "dpo",
        "model": str(model),
        "data": str(data),
        "output": str(out),
        "lr": 1e-6,
        "lr_end": 1e-7,
        "epochs": 1,
        "batch_size": 2,
        "grad_accum": 1,
        "dropout": 0.0,
        "max_length": 64,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "max_steps": 1,
        "gradient_checkpointing": True,
        "overwrite": True,
        **extra,
    }


def torchrun(args: list[str], launcher: str = "srlm_compute.launch", ranks: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", launcher, "--standalone", "--nproc-per-node", str(ranks), *args]
    return subprocess.run(cmd, env=env(), capture_output=True, text=True)


def rank_worker(job_path: str) -> None:
    """One rank of the ``load`` measurement: train.py's loading and trainer set-up, no step."""
    from datasets import Dataset

    from srlm_compute import progress, train
    from srlm_compute.jobs import DistributedSpec, TrainJob, load_job
    from srlm_compute.runtime import peak_rss_mb, quiet_libraries, world

    quiet_libraries()
    job = load_job(TrainJob, job_path)
    me = world()
    spec = DistributedSpec()
    loaded = train.load_models(job, spec, me)
    after_load = peak_rss_mb()
    common = train.trainer_arguments(job, spec, me, "cpu", loaded.model, job.output + ".partial", checkpoint_every=0)
    trainer = train.make_trainer(
        job, loaded.model, loaded.ref_model, loaded.tokenizer, Dataset.from_list(train.load_examples(job)), common, []
    )
    resident = sum(1 for m in (trainer.model, trainer.ref_model) if m is not None)
    rss = train.gather_peak_rss(me)
    if me.main:
        progress.emit("measured", peak_rss_mb_per_rank=rss, rank0_after_load_mb=round(after_load, 1), models_resident=resident)
    from srlm_compute.runtime import leave_process_group

    leave_process_group()


def measure(kind: str, config: str, model: Path, data: Path, work: Path, params: int, ranks: int = 2) -> dict:
    extra = CONFIGS[config]
    out = work / f"out-{kind}-{config}"
    job_path = work / f"job-{kind}-{config}.json"
    job_path.write_text(json.dumps(train_job(model, data, out, extra)))
    # bytes per parameter per rank: weights + reference (fp32 4+4, bf16 2+0) for load; + gradients,
    # DDP buckets and AdamW for a step; plus ~1 GB of libraries per rank
    per_param = {("load", "before"): 8, ("load", "after"): 2, ("step", "before"): 24, ("step", "after"): 10}[(kind, config)]
    need = ranks * (params * per_param / 1e9 + 1.0)
    avail = mem_available_gb()
    row = {"measurement": kind, "config": config, "params": params, "ranks": ranks, **extra}
    if need > avail - 0.5:
        return {**row, "skipped": f"needs ~{need:.1f} GB for {ranks} rank(s), {avail:.1f} GB available"}
    if kind == "load":
        res = torchrun([str(Path(__file__).resolve()), "--rank-worker", str(job_path)], "torch.distributed.run", ranks)
        events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
        got = [e for e in events if e.get("event") == "measured"]
        if res.returncode != 0 or not got:
            return {**row, "error": res.stderr[-2000:]}
        return {**row, **{k: v for k, v in got[0].items() if k != "event"}}
    res = torchrun(["-m", "srlm_compute", "train", "--job", str(job_path)], ranks=ranks)
    if res.returncode != 0:
        return {**row, "error": res.stderr[-2000:]}
    metrics = json.loads((out / "metrics.json").read_text())
    return {**row, "peak_rss_mb_per_rank": metrics["peak_rss_mb_per_rank"], "runtime_s": metrics["runtime_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/srlm-train-memory")
    parser.add_argument("--tokenizer", help="a HF directory with a chat template (default: the packaged SmolLM2)")
    parser.add_argument("--only", choices=["load", "step"], action="append")
    parser.add_argument("--config", choices=list(CONFIGS), action="append", help="default: both")
    parser.add_argument("--ranks", type=int, default=2, help="processes (2; 1 shows one rank's figure where 2 do not fit)")
    parser.add_argument("--rank-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_worker:
        rank_worker(args.rank_worker)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer
    if tokenizer is None:  # the packaged SmolLM2's tokenizer and chat template, imported once
        tokenizer = str(work / "smollm2")
        if not (Path(tokenizer) / "config.json").is_file():
            job = work / "import.json"
            job.write_text(json.dumps({"packaged": "smollm2-135m-instruct", "output": tokenizer, "overwrite": True}))
            subprocess.run(
                [sys.executable, "-m", "srlm_compute", "import-model", "--job", str(job)], check=True, env=env(), stdout=subprocess.DEVNULL
            )
    data = work / "dpo.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    rows = []
    for kind in args.only or ["step", "load"]:
        model = work / f"model-{kind}"
        params = make_model(tokenizer, model, SHAPES[kind])
        for config in args.config or list(CONFIGS):
            row = measure(kind, config, model, data, work, params, args.ranks)
            print(json.dumps(row), flush=True)
            rows.append(row)
    for kind in args.only or ["step", "load"]:
        got = {r["config"]: r for r in rows if r["measurement"] == kind and "peak_rss_mb_per_rank" in r}
        if len(got) == 2:
            before, after = (max(got[c]["peak_rss_mb_per_rank"]) for c in ("before", "after"))
            print(
                json.dumps(
                    {
                        "summary": kind,
                        "peak_rss_mb_max_rank_before": before,
                        "after": after,
                        "ratio_after_over_before": round(after / before, 3),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
