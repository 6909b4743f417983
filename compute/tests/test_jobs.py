"""Job / data validation: every bad input is exit 2 with an invalid_input event naming the problem."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, write_jsonl

from srlm_compute.jobs import GenerateRequest, InvalidInput, TrainJob, parse_record


def _model_stub(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def _assert_invalid(res, *needles):
    assert res.rc == 2, res.stderr[-2000:]
    err = res.last()
    assert err["event"] == "error" and err["kind"] == "invalid_input"
    for needle in needles:
        assert needle in err["message"], err["message"]


def test_unknown_job_key_names_the_key(tmp_path):
    model = _model_stub(tmp_path)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "x"}])
    job = {"model": str(model), "input": str(inp), "output": str(tmp_path / "out.jsonl"), "batchsize": 4}
    _assert_invalid(run_cli("generate", job, tmp_path), "'batchsize'")


def test_unknown_train_key_names_the_key(tmp_path):
    model = _model_stub(tmp_path)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    job = {"mode": "sft", "model": str(model), "data": str(data), "output": str(tmp_path / "o"), "learning_rate": 1}
    _assert_invalid(run_cli("train", job, tmp_path), "'learning_rate'")


def test_wrong_type_and_bad_enum(tmp_path):
    model = _model_stub(tmp_path)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "x"}])
    base = {"model": str(model), "input": str(inp), "output": str(tmp_path / "out.jsonl")}
    _assert_invalid(run_cli("generate", {**base, "batch_size": "16"}, tmp_path), "'batch_size'")
    _assert_invalid(run_cli("generate", {**base, "device": "tpu"}, tmp_path), "'device'")


def test_missing_files(tmp_path):
    job = {"model": str(tmp_path / "nope"), "input": str(tmp_path / "in.jsonl"), "output": str(tmp_path / "o")}
    _assert_invalid(run_cli("generate", job, tmp_path), "'model'")
    res = run_cli("generate", {"model": "x"}, tmp_path)
    _assert_invalid(res, "'input'")
    res = run_cli("import-model", {"gguf": str(tmp_path / "x.gguf"), "output": str(tmp_path / "o")}, tmp_path)
    _assert_invalid(res, "'gguf'")
    res = run_cli("import-model", {"packaged": "llama-70b", "output": str(tmp_path / "o")}, tmp_path)
    _assert_invalid(res, "llama-70b")


def test_job_file_not_json(tmp_path):
    import subprocess
    import sys

    from conftest import cli_env

    bad = tmp_path / "job.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "srlm_compute", "generate", "--job", str(bad)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    ev = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ev["kind"] == "invalid_input" and str(bad) in ev["message"]


def test_bad_command_line(tmp_path):
    import subprocess
    import sys

    from conftest import cli_env

    proc = subprocess.run(
        [sys.executable, "-m", "srlm_compute", "frobnicate", "--job", "x"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout.strip())["kind"] == "invalid_input"


def test_malformed_request_line_names_file_and_line(tmp_path):
    model = _model_stub(tmp_path)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "prompt": "x"}) + "\n\n" + "{broken\n")
    job = {"model": str(model), "input": str(inp), "output": str(tmp_path / "out.jsonl")}
    _assert_invalid(run_cli("generate", job, tmp_path), f"{inp}:3")

    write_jsonl(inp, [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y", "temprature": 0.5}])
    _assert_invalid(run_cli("generate", job, tmp_path), f"{inp}:2", "'temprature'")

    write_jsonl(inp, [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    _assert_invalid(run_cli("generate", job, tmp_path), f"{inp}:2", "duplicate")

    write_jsonl(inp, [{"id": "a"}])
    _assert_invalid(run_cli("generate", job, tmp_path), f"{inp}:1", "messages")


def test_train_data_errors_name_file_and_line(tmp_path):
    model = _model_stub(tmp_path)
    data = tmp_path / "d.jsonl"
    data.write_text("")
    job = {"mode": "dpo", "model": str(model), "data": str(data), "output": str(tmp_path / "o")}
    _assert_invalid(run_cli("train", job, tmp_path), f"{data}:1", "empty")

    write_jsonl(data, [{"id": 1, "prompt": "p", "chosen": "c", "rejected": "r"}, {"id": 2, "prompt": "p", "chosen": "c"}])
    _assert_invalid(run_cli("train", job, tmp_path), f"{data}:2", "'rejected'")

    job_sft = {**job, "mode": "sft"}
    write_jsonl(data, [{"id": 1, "prompt": "p", "completion": ""}])
    _assert_invalid(run_cli("train", job_sft, tmp_path), f"{data}:1", "'completion'")


def test_existing_output_needs_overwrite(tmp_path):
    model = _model_stub(tmp_path)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    out = tmp_path / "o"
    out.mkdir()
    job = {"mode": "sft", "model": str(model), "data": str(data), "output": str(out)}
    _assert_invalid(run_cli("train", job, tmp_path), "already exists")


def test_parse_record_unit():
    req = parse_record(GenerateRequest, {"id": "a", "prompt": "x", "temperature": 0, "n": 2.0}, "f:1")
    assert req.temperature == 0.0 and req.n == 2 and isinstance(req.n, int)
    with pytest.raises(InvalidInput, match="'n'"):
        parse_record(GenerateRequest, {"id": "a", "prompt": "x", "n": True}, "f:1")
    with pytest.raises(InvalidInput, match="top_p"):
        parse_record(GenerateRequest, {"id": "a", "prompt": "x", "top_p": 0}, "f:1")
    with pytest.raises(InvalidInput, match="role"):
        parse_record(GenerateRequest, {"id": "a", "messages": [{"role": "bot", "content": "x"}]}, "f:1")
    with pytest.raises(InvalidInput, match="missing required key 'mode'"):
        parse_record(TrainJob, {"model": "m"}, "job.json")
