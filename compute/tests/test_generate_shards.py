"""generate: multi-shard jobs, prompts too long for the context, waiting for an output lock (tiny model)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading

from conftest import run_cli, write_jsonl


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _model_stub(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def test_shards_resume_too_long_and_lock_wait(tiny_model_dir, tmp_path):
    s0 = write_jsonl(
        tmp_path / "s0.jsonl",
        [
            {"id": "a1", "prompt": "Once upon a time", "n": 2, "temperature": 1.0, "max_new_tokens": 4, "seed": 1},
            {"id": "a2", "messages": [{"role": "user", "content": "Tell me everything."}], "max_new_tokens": 2040},
            {"id": "a3", "prompt": "Hello", "temperature": 0, "max_new_tokens": 3},
        ],
    )
    s1 = write_jsonl(tmp_path / "s1.jsonl", [{"id": "b1", "prompt": "Hi", "max_new_tokens": 2}])
    s2 = write_jsonl(
        tmp_path / "s2.jsonl",
        [
            {"id": "c1", "prompt": "One", "max_new_tokens": 2},
            {"id": "c2", "prompt": "Two", "max_new_tokens": 4, "seed": 5},
        ],
    )
    o0, o1, o2 = (tmp_path / f"s{i}.out.jsonl" for i in range(3))
    # shard 1 is complete already; shard 2 has c1 and a torn line of c2
    b1_line = json.dumps({"id": "b1", "outputs": [{"text": "x", "tokens": 1, "finish_reason": "stop"}]}) + "\n"
    o1.write_text(b1_line)
    c1_line = json.dumps({"id": "c1", "outputs": [{"text": "y", "tokens": 2, "finish_reason": "length"}]}) + "\n"
    o2.write_text(c1_line + '{"id": "c2", "outp')
    job = {
        "model": str(tiny_model_dir),
        "device": "cpu",
        "batch_size": 4,
        "shards": [{"input": str(s), "output": str(o)} for s, o in ((s0, o0), (s1, o1), (s2, o2))],
    }

    # Another process holds shard 2's lock for a moment: the job waits, then runs.
    fd = os.open(str(o2) + ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    timer = threading.Timer(1.0, lambda: os.close(fd))
    timer.start()
    try:
        res = run_cli("generate", job, tmp_path)
    finally:
        timer.join()
    assert res.rc == 0, res.stderr[-3000:]
    assert "waiting up to" in res.stderr
    assert o2.read_text().startswith(c1_line)  # the torn line was cut only after the lock was ours

    start = res.events[0]
    assert start["event"] == "start"
    assert (start["total"], start["skipped"], start["pending"], start["shards"]) == (6, 2, 4, 3)
    names = [e["event"] for e in res.events]
    shard_dones = res.of("shard_done")
    assert [(e["shard"], e["requests"], e["output"]) for e in shard_dones] == [(0, 3, str(o0)), (1, 1, str(o1)), (2, 2, str(o2))]
    # shards run in order: shard k's progress comes before shard k's shard_done, and after shard k-1's
    order = [(e["event"], e.get("shard")) for e in res.events if e["event"] in ("progress", "shard_done")]
    assert [s for _, s in order] == sorted(s for _, s in order)
    assert names[-1] == "done"
    for e in res.of("progress"):
        assert {"done", "total", "tokens", "elapsed_s", "shard", "shard_done", "shard_total"} <= set(e)
        assert e["total"] == 6 and e["shard_done"] <= e["shard_total"]
    last0 = [e for e in res.of("progress") if e["shard"] == 0][-1]
    assert last0["shard_done"] == last0["shard_total"] == 3
    last2 = [e for e in res.of("progress") if e["shard"] == 2][-1]
    assert (last2["shard_done"], last2["shard_total"], last2["done"]) == (2, 2, 6)

    rows0 = {r["id"]: r for r in _lines(o0)}
    assert set(rows0) == {"a1", "a2", "a3"}
    assert rows0["a2"]["outputs"] == []
    assert re.fullmatch(r"prompt_too_long: \d+ prompt tokens \+ 2040 new tokens > context 2048", rows0["a2"]["skipped"])
    assert len(rows0["a1"]["outputs"]) == 2 and len(rows0["a3"]["outputs"]) == 1
    assert o1.read_text() == b1_line
    rows2 = _lines(o2)
    assert [r["id"] for r in rows2] == ["c1", "c2"]
    done = res.last()
    assert (done["done"], done["skipped"], done["skipped_too_long"]) == (6, 2, 1)
    generated = [o for r in list(rows0.values()) + rows2[1:] for o in r["outputs"]]
    assert done["tokens"] == sum(o["tokens"] for o in generated) > 0

    # Everything present (the too-long request included): no model load, every shard reported done.
    before = [p.read_text() for p in (o0, o1, o2)]
    res2 = run_cli("generate", job, tmp_path)
    assert res2.rc == 0, res2.stderr[-3000:]
    assert res2.events[0]["pending"] == 0 and res2.events[0]["skipped"] == 6
    assert [e["shard"] for e in res2.of("shard_done")] == [0, 1, 2]
    assert res2.last()["event"] == "done" and res2.last()["tokens"] == 0 and res2.last()["skipped_too_long"] == 0
    assert [p.read_text() for p in (o0, o1, o2)] == before


def test_shard_job_validation(tmp_path):
    model = _model_stub(tmp_path)
    s0 = write_jsonl(tmp_path / "s0.jsonl", [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}])
    s1 = write_jsonl(tmp_path / "s1.jsonl", [{"id": "b", "prompt": "z"}])
    o0, o1 = str(tmp_path / "o0.jsonl"), str(tmp_path / "o1.jsonl")
    base = {"model": str(model)}

    def invalid(job, *needles):
        res = run_cli("generate", job, tmp_path)
        assert res.rc == 2, res.stderr[-2000:]
        err = res.last()
        assert err["event"] == "error" and err["kind"] == "invalid_input"
        for needle in needles:
            assert needle in err["message"], err["message"]

    invalid({**base, "input": str(s0), "shards": [{"input": str(s0), "output": o0}]}, "'input'", "'shards'")
    invalid({**base, "output": o0, "shards": [{"input": str(s0), "output": o0}]}, "'output'", "'shards'")
    invalid({**base, "shards": []}, "'shards' must not be empty")
    invalid({**base, "shards": {"input": str(s0)}}, "'shards' must be array")
    invalid({**base, "shards": [{"input": str(s0), "out": o0}]}, "shards[0]", "'out'")
    invalid(
        {**base, "shards": [{"input": str(s0), "output": o0}, {"input": str(tmp_path / "no.jsonl"), "output": o1}]},
        "shards[1]",
        "file not found",
    )
    invalid({**base, "shards": [{"input": str(s0), "output": o0}, {"input": str(s1), "output": o0}]}, "also the output of shards[0]")
    invalid(
        {**base, "shards": [{"input": str(s0), "output": o0}, {"input": str(s1), "output": o1}]}, f"{s1}:1", "duplicate id 'b'", f"{s0}:2"
    )
    invalid(base, "'input'")
    assert not os.path.exists(o0) and not os.path.exists(o1)
