"""generate on the real imported SmolLM2-135M-Instruct."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from conftest import cli_env, parse_events, run_cli, write_jsonl

MAX_NEW = 8


def _requests():
    return [
        {
            "id": "q1",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "n": 2,
            "temperature": 0.7,
            "top_p": 0.9,
            "max_new_tokens": MAX_NEW,
            "seed": 12345,
        },
        {"id": "q2", "prompt": "Once upon a time", "n": 2, "temperature": 1.0, "max_new_tokens": MAX_NEW, "seed": 7},
    ]


def _read_output(path):
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def _check_result(row, n):
    assert len(row["outputs"]) == n
    for out in row["outputs"]:
        assert set(out) == {"text", "tokens", "finish_reason"}
        assert 1 <= out["tokens"] <= MAX_NEW
        assert out["finish_reason"] in ("stop", "length")
        if out["finish_reason"] == "length":
            assert out["tokens"] == MAX_NEW
        assert isinstance(out["text"], str)
        assert "<|im_start|>" not in out["text"] and "<|im_end|>" not in out["text"]


def test_generate_and_resume(model_dir, tmp_path):
    inp = write_jsonl(tmp_path / "requests.jsonl", _requests())
    out = tmp_path / "outputs.jsonl"
    job = {"model": str(model_dir), "input": str(inp), "output": str(out), "device": "cpu", "batch_size": 16}

    res = run_cli("generate", job, tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    assert res.events[0]["event"] == "start" and res.events[0]["total"] == 2
    assert res.of("progress")[-1]["done"] == 2
    done = res.last()
    assert done["event"] == "done" and done["done"] == 2
    rows = _read_output(out)
    assert sorted(r["id"] for r in rows) == ["q1", "q2"]
    for row in rows:
        _check_result(row, 2)
    assert done["tokens"] == sum(o["tokens"] for r in rows for o in r["outputs"])
    # the prompt is never echoed
    q1 = next(r for r in rows if r["id"] == "q1")
    assert all("capital of France?" not in o["text"] for o in q1["outputs"])

    # Resume: q1/q2 are skipped, a torn trailing line is cut away, only q3 runs.
    with out.open("a") as fh:
        fh.write('{"id": "q3", "outputs": [{"te')
    reqs = _requests() + [
        {"id": "q3", "messages": [{"role": "user", "content": "Say hi."}], "n": 1, "temperature": 0, "max_new_tokens": MAX_NEW, "seed": 1}
    ]
    write_jsonl(inp, reqs)
    res2 = run_cli("generate", job, tmp_path)
    assert res2.rc == 0, res2.stderr[-3000:]
    assert res2.events[0]["skipped"] == 2 and res2.events[0]["pending"] == 1
    rows2 = _read_output(out)
    assert [r["id"] for r in rows2[:2]] == [r["id"] for r in rows]
    assert rows2[:2] == rows
    assert [r["id"] for r in rows2[2:]] == ["q3"]
    _check_result(rows2[2], 1)

    # Everything done: nothing to generate, nothing appended.
    res3 = run_cli("generate", job, tmp_path)
    assert res3.rc == 0 and res3.last()["tokens"] == 0
    assert len(_read_output(out)) == 3


def test_seeds_are_per_request(model_dir, tmp_path):
    """Same prompt + seed gives the same samples regardless of the request's id or batch mates."""
    base = {"messages": [{"role": "user", "content": "Name a fruit."}], "n": 2, "temperature": 1.0, "max_new_tokens": MAX_NEW}
    reqs = [
        {"id": "a", **base, "seed": 3},
        {"id": "b", **base, "seed": 3},
        {"id": "c", **base, "seed": 4},
    ]
    inp = write_jsonl(tmp_path / "requests.jsonl", reqs)
    out = tmp_path / "outputs.jsonl"
    res = run_cli("generate", {"model": str(model_dir), "input": str(inp), "output": str(out), "device": "cpu"}, tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    rows = {r["id"]: r["outputs"] for r in _read_output(out)}
    assert rows["a"] == rows["b"]
    assert rows["a"] != rows["c"]


def test_sigterm_stops_promptly_with_complete_lines(model_dir, tmp_path):
    reqs = [{"id": f"r{i}", "prompt": f"Story number {i}:", "n": 1, "temperature": 1.0, "max_new_tokens": 200, "seed": i} for i in range(8)]
    inp = write_jsonl(tmp_path / "requests.jsonl", reqs)
    out = tmp_path / "outputs.jsonl"
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps({"model": str(model_dir), "input": str(inp), "output": str(out), "device": "cpu", "batch_size": 2}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "srlm_compute", "generate", "--job", str(job_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    try:
        first = proc.stdout.readline()  # "start": the model is about to load
        assert json.loads(first)["event"] == "start"
        time.sleep(8)  # into generation
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 143
    assert elapsed < 5, elapsed
    events = parse_events(first + proc.stdout.read())
    assert events[-1]["event"] == "error" and events[-1]["signal"] == "SIGTERM"
    if out.exists():
        data = out.read_text()
        assert data == "" or data.endswith("\n")
        for line in data.splitlines():
            json.loads(line)
