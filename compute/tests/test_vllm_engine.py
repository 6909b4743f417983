"""The vLLM engine of ``generate`` (srlm_compute.vllm_engine) against a FAKE vllm module.

vLLM itself cannot be installed here (CUDA wheels, no GPU). ``tests/fakes/vllm`` is a fake
``vllm`` package, named so in its docstring, that records the LLM / SamplingParams /
generate calls and answers deterministically; these tests put it on the PYTHONPATH of the
real ``python -m srlm_compute generate`` process and check what srlm sends to vLLM and what
it writes back. The tokenizer is SmolLM2's real one (the ``model_dir`` fixture); no weights
are loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import COMPUTE_DIR, run_cli, write_jsonl

FAKES = Path(__file__).resolve().parent / "fakes"


def fake_env(log: Path) -> dict:
    return {"PYTHONPATH": f"{COMPUTE_DIR}{os.pathsep}{FAKES}", "FAKE_VLLM_LOG": str(log)}


def read_log(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_samples(prompt_ids: list[int], req: dict, stop_id: int) -> list[dict]:
    """What the fake answers for each sample of ``req`` when srlm maps it correctly."""
    import sys

    sys.path.insert(0, str(FAKES))
    try:
        from vllm import SamplingParams, fake_completion  # the fake
    finally:
        sys.path.remove(str(FAKES))
        sys.modules.pop("vllm", None)  # the fake stays out of this process's module table
    from srlm_compute.generate import _row_seed

    greedy = req.get("temperature", 1.0) == 0
    out = []
    for j in range(req.get("n", 1)):
        sp = SamplingParams(
            n=1,
            temperature=0.0 if greedy else float(req.get("temperature", 1.0)),
            top_p=1.0 if greedy else float(req.get("top_p", 1.0)),
            max_tokens=req.get("max_new_tokens", 256),
            seed=_row_seed(req.get("seed", 0), j),
            stop_token_ids=[stop_id],
        )
        text, ids, reason = fake_completion(prompt_ids, sp)
        out.append({"text": text, "tokens": len(ids), "finish_reason": reason})
    return out


def prompt_ids(model_dir: Path, req: dict) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if "messages" in req:
        text = tok.apply_chat_template(req["messages"], add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]
    return tok(req["prompt"])["input_ids"]


REQUESTS = [
    {
        "id": "a",
        "messages": [{"role": "user", "content": "Name three rivers."}],
        "n": 3,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_new_tokens": 40,
        "seed": 11,
    },
    {"id": "b", "prompt": "Once upon a time", "n": 2, "temperature": 1.2, "top_p": 0.5, "max_new_tokens": 5, "seed": 6},
    {
        "id": "c",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0,
        "top_p": 0.8,
        "max_new_tokens": 300,
        "seed": 7,
    },
]


def vllm_job(model_dir: Path, tmp_path: Path, shards: list[tuple[Path, Path]], **engine) -> dict:
    return {
        "model": str(model_dir),
        "shards": [{"input": str(i), "output": str(o)} for i, o in shards],
        "device": "cpu",
        "batch_size": 4,
        "engine": {"kind": "vllm", **engine},
    }


def test_maps_requests_to_sampling_params_and_writes_srlm_lines(model_dir, tmp_path):
    inp = write_jsonl(tmp_path / "req.jsonl", REQUESTS)
    out = tmp_path / "out.jsonl"
    log = tmp_path / "vllm.log"
    job = vllm_job(
        model_dir, tmp_path, [(inp, out)], tensor_parallel_size=2, gpu_memory_utilization=0.75, max_model_len=4096, dtype="bfloat16"
    )
    res = run_cli("generate", job, tmp_path, env=fake_env(log))
    assert res.rc == 0, res.stderr[-3000:]

    calls = read_log(log)
    assert calls[0] == {
        "call": "LLM",
        "kwargs": {
            "model": str(model_dir),
            "tokenizer": str(model_dir),
            "tensor_parallel_size": 2,
            "gpu_memory_utilization": 0.75,
            "dtype": "bfloat16",
            "seed": 0,
            "max_model_len": 4096,
        },
    }
    gens = [c for c in calls if c["call"] == "generate"]
    assert len(gens) == 1 and gens[0]["use_tqdm"] is False
    # one vLLM prompt per sample: 3 + 2 + 1, in request order
    params, prompts = gens[0]["params"], gens[0]["prompts"]
    assert len(params) == 6
    from srlm_compute.generate import _row_seed

    ids = {r["id"]: prompt_ids(model_dir, r) for r in REQUESTS}
    owners = ["a", "a", "a", "b", "b", "c"]
    index = [0, 1, 2, 0, 1, 0]
    for p, ptoks, rid, j in zip(params, prompts, owners, index):
        req = next(r for r in REQUESTS if r["id"] == rid)
        assert ptoks == ids[rid]
        assert p["n"] == 1
        assert p["seed"] == _row_seed(req["seed"], j)
        assert p["max_tokens"] == req["max_new_tokens"]
        assert p["stop_token_ids"] == [2]  # SmolLM2's <|im_end|>, as the local engine stops
        assert p["skip_special_tokens"] is True
        if req["temperature"] == 0:
            assert (p["temperature"], p["top_p"]) == (0.0, 1.0)
        else:
            assert (p["temperature"], p["top_p"]) == (req["temperature"], req["top_p"])
    assert len({p["seed"] for p in params}) == 6  # every sample its own seed

    lines = read_lines(out)
    assert [line["id"] for line in lines] == ["a", "b", "c"]
    for line in lines:
        req = next(r for r in REQUESTS if r["id"] == line["id"])
        assert line == {"id": req["id"], "outputs": expected_samples(ids[req["id"]], req, 2)}
    reasons = {o["finish_reason"] for line in lines for o in line["outputs"]}
    assert reasons == {"stop", "length"}, reasons  # the fixture exercises both
    for o in (o for line in lines for o in line["outputs"]):
        assert o["tokens"] >= 1

    done = res.last()
    assert done["event"] == "done"
    assert done["tokens"] == sum(o["tokens"] for line in lines for o in line["outputs"])
    assert done["done"] == 3 and done["skipped_too_long"] == 0
    start = res.of("start")[0]
    assert start["engine"] == "vllm" and start["pending"] == 3 and start["tensor_parallel_size"] == 2


def test_prompt_too_long_is_skipped_before_vllm(model_dir, tmp_path):
    long = {"id": "long", "prompt": "word " * 200, "max_new_tokens": 8, "seed": 1}
    short = {"id": "short", "prompt": "Hello", "max_new_tokens": 8, "seed": 2}
    inp = write_jsonl(tmp_path / "req.jsonl", [short, long])
    out = tmp_path / "out.jsonl"
    log = tmp_path / "vllm.log"
    res = run_cli("generate", vllm_job(model_dir, tmp_path, [(inp, out)], max_model_len=64), tmp_path, env=fake_env(log))
    assert res.rc == 0, res.stderr[-3000:]
    lines = read_lines(out)
    assert lines[0]["id"] == "long" and lines[0]["outputs"] == []  # skipped lines first, as locally
    n_long = len(prompt_ids(model_dir, long))
    assert lines[0]["skipped"] == f"prompt_too_long: {n_long} prompt tokens + 8 new tokens > context 64"
    assert lines[1]["id"] == "short" and len(lines[1]["outputs"]) == 1
    sent = [p for c in read_log(log) if c["call"] == "generate" for p in c["prompts"]]
    assert sent == [prompt_ids(model_dir, short)]
    assert res.last()["skipped_too_long"] == 1 and res.last()["done"] == 2


def test_model_context_from_config_when_no_max_model_len(model_dir, tmp_path):
    req = {"id": "big", "prompt": "Hello", "max_new_tokens": 8192, "seed": 3}  # 8192 is SmolLM2's context
    inp = write_jsonl(tmp_path / "req.jsonl", [req])
    out = tmp_path / "out.jsonl"
    res = run_cli("generate", vllm_job(model_dir, tmp_path, [(inp, out)]), tmp_path, env=fake_env(tmp_path / "l"))
    assert res.rc == 0, res.stderr[-3000:]
    assert read_lines(out)[0]["skipped"].endswith("new tokens > context 8192")
    assert "max_model_len" not in read_log(tmp_path / "l")[0]["kwargs"]


def test_context_vllm_derives_bounds_the_config_context(model_dir, tmp_path):
    req = {"id": "mid", "prompt": "Hello", "max_new_tokens": 5000, "seed": 3}  # fits 8192, not 4096
    inp = write_jsonl(tmp_path / "req.jsonl", [req])
    out = tmp_path / "out.jsonl"
    env = {**fake_env(tmp_path / "l"), "FAKE_VLLM_DERIVED_MAX_MODEL_LEN": "4096"}
    res = run_cli("generate", vllm_job(model_dir, tmp_path, [(inp, out)]), tmp_path, env=env)
    assert res.rc == 0, res.stderr[-3000:]
    assert read_lines(out)[0]["skipped"].endswith("+ 5000 new tokens > context 4096")
    assert not [c for c in read_log(tmp_path / "l") if c["call"] == "generate"]


def test_shards_calls_events_and_resume(model_dir, tmp_path):
    rows = [
        {"id": f"r{i}", "prompt": f"Question number {i}?", "n": 2, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 6, "seed": 1000 + i}
        for i in range(7)
    ]
    rows[4]["prompt"] = "x " * 100  # too long for max_model_len 64
    shards = []
    for k, chunk in enumerate([rows[0:3], rows[3:5], rows[5:7]]):
        shards.append((write_jsonl(tmp_path / f"s{k}.jsonl", chunk), tmp_path / f"s{k}.out.jsonl"))
    # shard 0 already has r1 from an earlier attempt, plus a torn line that must be cut
    earlier = {"id": "r1", "outputs": [{"text": "old", "tokens": 1, "finish_reason": "stop"}]}
    shards[0][1].write_text(json.dumps(earlier) + "\n" + '{"id": "r2", "outp')
    log = tmp_path / "vllm.log"
    job = vllm_job(model_dir, tmp_path, shards, max_model_len=64, requests_per_call=2)
    res = run_cli("generate", job, tmp_path, env=fake_env(log))
    assert res.rc == 0, res.stderr[-3000:]

    gens = [c for c in read_log(log) if c["call"] == "generate"]
    # pending generated requests r0 r2 | r3 r5 | r6 (r1 done, r4 too long): calls span shards
    assert [len(c["prompts"]) for c in gens] == [4, 4, 2]
    seeds = [[p["seed"] for p in c["params"]] for c in gens]
    from srlm_compute.generate import _row_seed

    assert seeds[0] == [_row_seed(1000, 0), _row_seed(1000, 1), _row_seed(1002, 0), _row_seed(1002, 1)]

    assert [line["id"] for line in read_lines(shards[0][1])] == ["r1", "r0", "r2"]
    assert read_lines(shards[0][1])[0] == earlier
    assert [line["id"] for line in read_lines(shards[1][1])] == ["r4", "r3"]
    assert [line["id"] for line in read_lines(shards[2][1])] == ["r5", "r6"]

    # events: a shard is announced after all of its lines, shards in order
    order = [(e["event"], e.get("shard")) for e in res.events if e["event"] in ("progress", "shard_done")]
    done_at = {k: order.index(("shard_done", k)) for k in range(3)}
    assert done_at[0] < done_at[1] < done_at[2]
    for k in range(3):
        assert max(i for i, x in enumerate(order) if x == ("progress", k)) < done_at[k]
    last_progress = [e for e in res.events if e["event"] == "progress"][-1]
    assert last_progress["done"] == 7 and last_progress["total"] == 7
    done = res.last()
    assert done["done"] == 7 and done["skipped"] == 1 and done["skipped_too_long"] == 1

    # again: everything is there, vLLM is not even imported
    log.unlink()
    res = run_cli("generate", job, tmp_path, env={"FAKE_VLLM_LOG": str(log)})  # no fake on the path
    assert res.rc == 0, res.stderr[-3000:]
    assert not log.exists()
    assert [e["shard"] for e in res.of("shard_done")] == [0, 1, 2]


def test_missing_vllm_is_exit_2_with_install_hint(model_dir, tmp_path):
    inp = write_jsonl(tmp_path / "req.jsonl", REQUESTS[:1])
    res = run_cli("generate", vllm_job(model_dir, tmp_path, [(inp, tmp_path / "out.jsonl")]), tmp_path)
    assert res.rc == 2, res.stderr[-2000:]
    err = res.last()
    assert err["event"] == "error" and err["kind"] == "invalid_input"
    assert err["message"].startswith("compute.engine.kind vllm needs the vllm package on the generation worker")
    assert "vllm==0.33.0" in err["message"] and "SRLM_VLLM_PYTHON" in err["message"]
    assert "bash scripts/bootstrap-vllm.sh" in err["message"]
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""


def test_aborted_sample_fails_the_job(model_dir, tmp_path):
    inp = write_jsonl(tmp_path / "req.jsonl", [{"id": "x", "prompt": "Hi", "max_new_tokens": 13, "seed": 5}])
    res = run_cli("generate", vllm_job(model_dir, tmp_path, [(inp, tmp_path / "o.jsonl")]), tmp_path, env=fake_env(tmp_path / "l"))
    assert res.rc == 1
    assert "finish_reason 'abort'" in res.last()["message"]
    out = tmp_path / "o.jsonl"
    assert not out.exists() or out.read_text() == ""  # nothing half-answered is written


@pytest.mark.parametrize(
    "engine, needle",
    [
        ({"kind": "vllm", "gpu_memory_utilization": 1.5}, "'gpu_memory_utilization' must be in (0, 1]"),
        ({"kind": "vllm", "tensor_parallel_size": 0}, "'tensor_parallel_size' must be > 0"),
        ({"kind": "vllm", "dtype": "int4"}, "key 'dtype' must be"),
        ({"kind": "vllm", "tp": 2}, "engine: unknown key 'tp'"),
        ({"kind": "tgi"}, '\'engine.kind\' must be "local" or "vllm"'),
    ],
)
def test_bad_engine_keys_are_exit_2_naming_the_key(model_dir, tmp_path, engine, needle):
    inp = write_jsonl(tmp_path / "req.jsonl", REQUESTS[:1])
    job = {"model": str(model_dir), "input": str(inp), "output": str(tmp_path / "o.jsonl"), "engine": engine}
    res = run_cli("generate", job, tmp_path, env=fake_env(tmp_path / "l"))
    assert res.rc == 2
    assert needle in res.last()["message"], res.last()["message"]
