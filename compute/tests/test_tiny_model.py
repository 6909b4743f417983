"""make-tiny-model: a deterministic random Llama with the source tokenizer and chat template."""

from __future__ import annotations

import hashlib
import json

from conftest import run_cli, tiny_job


def test_tiny_model_is_deterministic_and_complete(tiny_model_dir, model_dir, tmp_path):
    # A fresh build of the same job is byte-identical to the fixture's (an earlier process, maybe an earlier session).
    again = tmp_path / "again"
    res = run_cli("make-tiny-model", tiny_job(model_dir, again), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    a = (tiny_model_dir / "model.safetensors").read_bytes()
    b = (again / "model.safetensors").read_bytes()
    assert a == b
    assert res.last()["sha256"] == hashlib.sha256(b).hexdigest()
    assert 3_000_000 < res.last()["params"] < 4_000_000
    assert not (tmp_path / "again.partial").exists()

    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (64, 2, 4)
    assert config["max_position_embeddings"] == 2048
    assert config["tie_word_embeddings"] is True
    source = json.loads((model_dir / "config.json").read_text())
    assert config["vocab_size"] == source["vocab_size"]

    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    tok = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tok["eos_token"] == "<|im_end|>" and gen["eos_token_id"] == 2
    assert (tiny_model_dir / "tokenizer.json").is_file()
    assert (tiny_model_dir / "chat_template.jinja").read_text() == (model_dir / "chat_template.jinja").read_text()


def test_tiny_model_job_is_strict(model_dir, tmp_path):
    base = {"tokenizer": str(model_dir), "output": str(tmp_path / "t")}
    for bad, needle in (
        ({**base, "hidden": 32}, "'hidden'"),
        ({**base, "hidden_size": 30, "heads": 4}, "'hidden_size'"),
        ({**base, "layers": 0}, "'layers'"),
        ({"output": str(tmp_path / "t")}, "'tokenizer'"),
        ({**base, "tokenizer": str(tmp_path)}, "no tokenizer files"),
    ):
        res = run_cli("make-tiny-model", bad, tmp_path)
        assert res.rc == 2, res.stderr[-2000:]
        assert res.last()["kind"] == "invalid_input" and needle in res.last()["message"], res.last()
