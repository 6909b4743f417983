"""Memory options of training on the tiny random Llama: precision and a precomputed DPO reference.

The figures (peak RSS per rank of a 1B model) come from compute/bench/train_memory.py; these tests
check that the options train correctly and that the precomputed reference gives the resident copy's
result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, write_jsonl
from safetensors import safe_open
from test_train_checkpoints import DPO_ROWS, SFT_ROWS


def _job(mode, model, data, out, **extra):
    return {
        "mode": mode,
        "model": str(model),
        "data": str(data),
        "output": str(out),
        "lr": 1e-3,
        "lr_end": 1e-4,
        "epochs": 1,
        "batch_size": 2,
        "grad_accum": 1,
        "dropout": 0.0,
        "max_length": 128,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "max_steps": 2,
        **extra,
    }


def _weights(out: Path) -> dict:
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_precomputed_reference_trains_like_a_resident_copy(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "dpo.jsonl", DPO_ROWS)
    runs = {}
    for reference in ("copy", "precomputed"):
        out = tmp_path / f"out-{reference}"
        res = run_cli("train", _job("dpo", tiny_model_dir, data, out, precision="fp32", reference=reference), tmp_path)
        assert res.rc == 0, res.stderr[-3000:]
        assert res.of("start")[0]["reference"] == reference
        runs[reference] = (res, out)
    resident = {r: json.loads((out / "metrics.json").read_text())["reference_resident"] for r, (_, out) in runs.items()}
    assert resident == {"copy": True, "precomputed": False}
    losses = {r: [e["loss"] for e in res.of("progress")] for r, (res, _) in runs.items()}
    assert len(losses["copy"]) == 2
    # the reference's log-probs are the same numbers, computed before training instead of during it
    assert losses["precomputed"] == pytest.approx(losses["copy"], abs=1e-5)
    copy, pre = _weights(runs["copy"][1]), _weights(runs["precomputed"][1])
    for name, tensor in copy.items():
        assert (pre[name] - tensor).abs().max().item() < 1e-5, name
    # training moved the weights away from the start
    start = _weights(tiny_model_dir)
    assert any((copy[n] - start[n]).abs().max().item() > 1e-4 for n in copy)


def test_bf16_precision_loads_trains_and_saves_bf16_weights(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "dpo.jsonl", DPO_ROWS)
    out = tmp_path / "out"
    res = run_cli("train", _job("dpo", tiny_model_dir, data, out, precision="bf16", reference="precomputed"), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    weights = _weights(out)
    assert {str(t.dtype) for t in weights.values()} == {"torch.bfloat16"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["reference"] == "precomputed"
    assert len(metrics["peak_rss_mb_per_rank"]) == 1 and metrics["peak_rss_mb_per_rank"][0] > 0


def test_bf16_mixed_keeps_fp32_weights(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    out = tmp_path / "out"
    res = run_cli("train", _job("sft", tiny_model_dir, data, out, precision="bf16-mixed"), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    assert {str(t.dtype) for t in _weights(out).values()} == {"torch.float32"}


def test_reference_is_refused_for_sft(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    res = run_cli("train", _job("sft", tiny_model_dir, data, tmp_path / "out", reference="precomputed"), tmp_path)
    assert res.rc == 2
    assert "key 'reference' is only used with mode \"dpo\"" in res.last()["message"]


def test_precomputed_reference_on_two_ranks_matches_the_policy_at_step_one(tiny_model_dir, tmp_path):
    """Each rank adds every example's reference log-probs itself (no shared cache file) and in dataset
    order: at step 1 the policy is the reference, so every example's reward margin is 0 and the loss ln 2."""
    from test_train_ddp import _job as ddp_job
    from test_train_ddp import run_ddp

    rows = [{**r, "chosen": r["chosen"] * (i + 1)} for i, r in enumerate(DPO_ROWS)]  # different lengths per example
    data = write_jsonl(tmp_path / "dpo.jsonl", rows)
    out = tmp_path / "out"
    res = run_ddp(ddp_job("dpo", tiny_model_dir, data, out, max_steps=1, reference="precomputed", dropout=0.0), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    first = res.of("progress")[0]
    assert first["loss"] == pytest.approx(0.6931472, abs=1e-5)
    assert first["rewards_margin"] == pytest.approx(0.0, abs=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reference_resident"] is False and len(metrics["peak_rss_mb_per_rank"]) == 2
