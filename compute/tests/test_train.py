"""SFT and DPO on the real imported SmolLM2-135M-Instruct, two optimizer steps each."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli, write_jsonl
from safetensors import safe_open

PROBE_TENSOR = "model.layers.0.mlp.down_proj.weight"


def _tensor(model_dir: Path, name: str = PROBE_TENSOR):
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(name)


def _check_output(model_dir: Path, out: Path):
    assert (out / "model.safetensors").is_file()
    assert (out / "config.json").is_file()
    assert (out / "tokenizer.json").is_file() or (out / "tokenizer.model").is_file()
    assert not Path(str(out) + ".partial").exists()
    assert not (_tensor(model_dir) == _tensor(out)).all(), "weights did not change"
    config = json.loads((out / "config.json").read_text())
    original = json.loads((model_dir / "config.json").read_text())
    assert config["attention_dropout"] == original["attention_dropout"]  # training-time dropout not persisted
    assert "quantization_config" not in config
    return json.loads((out / "metrics.json").read_text())


SFT_ROWS = [
    {"id": "1", "prompt": "What is 2+2?", "completion": "2+2 equals 4.", "kind": "ift"},
    {"id": "2", "prompt": "Name a color.", "completion": "Blue is a color.", "kind": "ift"},
    {"id": "3", "prompt": "Say hello in French.", "completion": "Bonjour !", "kind": "eft"},
    {"id": "4", "prompt": "What is the capital of Italy?", "completion": "The capital of Italy is Rome.", "kind": "ift"},
]

DPO_ROWS = [
    {"id": "1", "prompt": "What is 2+2?", "chosen": "2+2 equals 4.", "rejected": "It is 5.", "score_chosen": 5},
    {"id": "2", "prompt": "Name a color.", "chosen": "Blue is a color.", "rejected": "Dog."},
    {"id": "3", "prompt": "Say hello in French.", "chosen": "Bonjour !", "rejected": "Hola!"},
    {"id": "4", "prompt": "What is the capital of Italy?", "chosen": "Rome.", "rejected": "Paris is the capital."},
]


def _job(mode, model_dir, data, out, **extra):
    return {
        "mode": mode,
        "model": str(model_dir),
        "data": str(data),
        "output": str(out),
        "lr": 1e-4 if mode == "sft" else 1e-5,
        "lr_end": 1e-6,
        "epochs": 1,
        "batch_size": 2,
        "grad_accum": 1,
        "dropout": 0.1,
        "beta": 0.1,
        "max_length": 256,
        "seed": 0,
        "device": "cpu",
        "threads": 0,
        "max_steps": 2,
        **extra,
    }


def test_sft_two_steps(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    out = tmp_path / "sft-out"
    res = run_cli("train", _job("sft", model_dir, data, out, ref_model=None), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    steps = res.of("progress")
    assert [e["step"] for e in steps] == [1, 2]
    assert all(e["total_steps"] == 2 and e["loss"] > 0 for e in steps)
    assert steps[0]["lr"] > steps[1]["lr"]  # cosine decay
    metrics = _check_output(model_dir, out)
    assert metrics["steps"] == 2 and metrics["examples"] == 4
    assert metrics["train_loss"] > 0 and metrics["runtime_s"] > 0
    assert metrics["dropout_fields"] == ["attention_dropout"]
    assert res.last()["event"] == "done"


def test_sft_group_by_length(model_dir, tmp_path):
    """group_by_length picks the Trainer's length-grouped sampler; DPO jobs refuse the key."""
    rows = SFT_ROWS + [{"id": "5", "prompt": "Explain rain. " * 20, "completion": "Water vapour condenses. " * 15, "kind": "ift"}]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    out = tmp_path / "sft-out"
    res = run_cli("train", _job("sft", model_dir, data, out, ref_model=None, group_by_length=True), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    metrics = _check_output(model_dir, out)
    assert metrics["sampler"] == "group_by_length" and metrics["steps"] == 2
    dpo = run_cli("train", _job("dpo", model_dir, data, tmp_path / "dpo-out", group_by_length=True), tmp_path)
    assert dpo.rc == 2 and "group_by_length" in dpo.stderr


def test_dpo_two_steps(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "dpo.jsonl", DPO_ROWS)
    out = tmp_path / "dpo-out"
    res = run_cli("train", _job("dpo", model_dir, data, out, ref_model=None), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    steps = res.of("progress")
    assert [e["step"] for e in steps] == [1, 2]
    assert all("rewards_accuracy" in e and "rewards_margin" in e for e in steps)
    metrics = _check_output(model_dir, out)
    assert metrics["steps"] == 2 and metrics["beta"] == 0.1
    for key in ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"):
        assert isinstance(metrics["last"][key], float), key
        assert isinstance(metrics["mean"][key], float), key
    assert 0.0 <= metrics["last"]["rewards/accuracies"] <= 1.0
