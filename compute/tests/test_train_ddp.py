"""Training under torchrun: 2 CPU processes (gloo) through ``srlm_compute.launch``, tiny random model.

Each launch costs ~30-60 s on a 2-core machine (every rank imports torch / TRL), so the module
runs few of them: one SFT run with checkpoints (also the reference for the resume), one resume,
one DPO run, a single-process run of the same SFT job for the step count, and the failures
(invalid jobs found by the launcher and by the ranks; a runtime error injected into rank 1 only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CliResult, cli_env, parse_events, run_cli, start_cli, write_job, write_jsonl
from safetensors import safe_open
from test_train_checkpoints import DPO_ROWS, SFT_ROWS  # 6 SFT examples, 4 DPO pairs

from srlm_compute import checkpoints, launch, progress


def _job(mode, model, data, out, **extra):
    return {
        "mode": mode,
        "model": str(model),
        "data": str(data),
        "output": str(out),
        "lr": 1e-3,
        "lr_end": 1e-4,
        "epochs": 2,
        "batch_size": 2,
        "grad_accum": 1,
        "dropout": 0.1,
        "max_length": 128,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        **extra,
    }


def _launch_args(job_path: Path, nproc: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "srlm_compute.launch",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "srlm_compute",
        "train",
        "--job",
        str(job_path),
    ]


def start_ddp(job: dict, tmp_path: Path, nproc: int = 2, env: dict | None = None) -> subprocess.Popen:
    job_path = write_job("train", job, tmp_path)
    with open(str(job_path) + ".stderr", "w") as err:
        return subprocess.Popen(_launch_args(job_path, nproc), stdout=subprocess.PIPE, stderr=err, text=True, env=env or cli_env())


def finish(proc: subprocess.Popen, timeout: float = 600) -> CliResult:
    stdout, _ = proc.communicate(timeout=timeout)
    return CliResult(rc=proc.returncode, events=parse_events(stdout), stderr=Path(proc.args[-1] + ".stderr").read_text())


def run_ddp(job: dict, tmp_path: Path, nproc: int = 2) -> CliResult:
    return finish(start_ddp(job, tmp_path, nproc))


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    with safe_open(str(model_dir / "model.safetensors"), framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _one_stream(res: CliResult) -> None:
    """One start, one done, last; each step reported once, in order."""
    names = [e["event"] for e in res.events]
    assert names.count("start") == 1 and names[0] == "start", names
    assert names.count("done") == 1 and names[-1] == "done", names
    assert "error" not in names
    assert not [e for e in res.events if "rank" in e]


@pytest.fixture(scope="module")
def sft_runs(tiny_model_dir, tmp_path_factory):
    """The 2-process SFT run with checkpoints and the same job in one process, side by side."""
    root = tmp_path_factory.mktemp("ddp-sft")
    data = write_jsonl(root / "sft.jsonl", SFT_ROWS)  # 6 examples, global batch 2, 2 epochs: 6 steps
    ddp = start_ddp(_job("sft", tiny_model_dir, data, root / "ddp-out", checkpoint_every=2, checkpoint_dir=str(root / "ddp-ckpt")), root)
    single = start_cli("train", _job("sft", tiny_model_dir, data, root / "one-out"), root)
    try:
        ddp_res = finish(ddp)
        out, _ = single.communicate(timeout=600)
        one_res = CliResult(single.returncode, parse_events(out), Path(single.args[-1] + ".stderr").read_text())
    finally:
        for p in (ddp, single):
            if p.poll() is None:
                p.kill()
    return {"root": root, "data": data, "ddp": ddp_res, "one": one_res}


def test_sft_two_processes(sft_runs, tiny_model_dir):
    res, one, root = sft_runs["ddp"], sft_runs["one"], sft_runs["root"]
    assert res.rc == 0, res.stderr[-3000:]
    _one_stream(res)
    start = res.events[0]
    assert (start["world_size"], start["strategy"], start["per_device_batch_size"]) == (2, "ddp", 1)
    assert [e["step"] for e in res.of("progress")] == [1, 2, 3, 4, 5, 6]
    assert all(e["total_steps"] == 6 for e in res.of("progress"))
    # global batch semantics: the same job in one process takes the same steps
    assert one.rc == 0, one.stderr[-3000:]
    assert one.events[0]["world_size"] == 1 and one.events[0]["per_device_batch_size"] == 2
    assert [e["step"] for e in one.of("progress")] == [1, 2, 3, 4, 5, 6]
    assert [e["epoch"] for e in one.of("progress")] == [e["epoch"] for e in res.of("progress")]
    assert [e["lr"] for e in one.of("progress")] == [e["lr"] for e in res.of("progress")]

    ckpts = res.of("checkpoint")
    assert [e["step"] for e in ckpts] == [2, 4]
    for e in ckpts:
        manifest = checkpoints.verify(e["dir"], "sft")
        listed = {f["path"] for f in manifest["files"]}
        assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "model.safetensors"} <= listed
        assert "rng_state.pth" not in listed
    assert sorted(p.name for p in (root / "ddp-ckpt").iterdir()) == ["step-000002", "step-000004"]

    out = root / "ddp-out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["world_size"] == 2 and metrics["per_device_batch_size"] == 1
    assert metrics["batch_size"] == 2 and metrics["strategy"] == "ddp" and metrics["examples"] == 6
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith("ddp-out")) == ["ddp-out", "ddp-out.lock"]
    assert not list(out.glob("checkpoint-*")) and not list(out.glob("rng_state*"))
    base, trained = _weights(tiny_model_dir), _weights(out)
    assert base.keys() == trained.keys()
    assert any(not np.array_equal(base[k], trained[k]) for k in base)

    # the output model loads and runs
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape[:2] == (1, 3) and torch.isfinite(logits).all()


def test_resume_two_processes(sft_runs, tiny_model_dir, tmp_path):
    assert sft_runs["ddp"].rc == 0
    root = sft_runs["root"]
    step4 = root / "ddp-ckpt" / "step-000004"
    res = run_ddp(
        _job(
            "sft",
            tiny_model_dir,
            sft_runs["data"],
            tmp_path / "resumed",
            resume_from=str(step4),
            checkpoint_every=2,
            checkpoint_dir=str(tmp_path / "ckpt"),
        ),
        tmp_path,
    )
    assert res.rc == 0, res.stderr[-3000:]
    _one_stream(res)
    assert res.events[0]["resumed_from_step"] == 4
    progress_events = res.of("progress")
    assert [e["step"] for e in progress_events] == [5, 6]
    reference = sft_runs["ddp"].of("progress")[4:]
    assert [e["loss"] for e in progress_events] == pytest.approx([e["loss"] for e in reference], abs=1e-6)
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert (metrics["resumed_from_step"], metrics["steps"], metrics["steps_run"]) == (4, 6, 2)
    ref_w, run_w = _weights(root / "ddp-out"), _weights(tmp_path / "resumed")
    max_diff = max(float(np.abs(ref_w[k] - run_w[k]).max()) for k in ref_w)
    assert max_diff <= 1e-6, max_diff  # every rank restored weights, optimizer, scheduler, RNG and data position


def test_dpo_two_processes(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "dpo.jsonl", DPO_ROWS)
    res = run_ddp(_job("dpo", tiny_model_dir, data, tmp_path / "out", epochs=1, lr=1e-4), tmp_path)
    assert res.rc == 0, res.stderr[-3000:]
    _one_stream(res)
    steps = res.of("progress")
    assert [e["step"] for e in steps] == [1, 2]  # 4 pairs, global batch 2
    assert all("rewards_accuracy" in e and "rewards_margin" in e for e in steps)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 2 and metrics["beta"] == 0.1
    assert isinstance(metrics["last"]["rewards/accuracies"], float)
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_invalid_jobs_exit_2_under_torchrun(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    # found by the ranks: the global batch does not split over 2 processes; FSDP on CPU
    bad_batch = start_ddp(_job("sft", tiny_model_dir, data, tmp_path / "o1", batch_size=3), tmp_path)
    fsdp = start_ddp(_job("sft", tiny_model_dir, data, tmp_path / "o2", distributed={"strategy": "fsdp"}), tmp_path)
    # found by the launcher before any rank starts
    res = run_ddp(_job("sft", tiny_model_dir, data, tmp_path / "o3", distributed={"strategy": "zero3"}), tmp_path)
    assert res.rc == 2 and [e["event"] for e in res.events] == ["error"], res.stderr[-2000:]
    assert res.last()["kind"] == "invalid_input" and "'strategy'" in res.last()["message"]
    assert "torch.distributed" not in res.stderr  # torchrun never ran

    for proc, needles in ((bad_batch, ("'batch_size' (3)", "divisible", "(2)")), (fsdp, ("'distributed.strategy'", "needs CUDA", '"ddp"'))):
        res = finish(proc)
        assert res.rc == 2, res.stderr[-3000:]
        errors = res.of("error")
        assert len(errors) == 1 and res.events == errors, res.events  # one error for all ranks, nothing else
        assert errors[0]["kind"] == "invalid_input" and errors[0]["rank"] in (0, 1)
        assert errors[0]["message"].startswith(f"rank {errors[0]['rank']}: ")
        for needle in needles:
            assert needle in errors[0]["message"], errors[0]["message"]
    assert not [p for p in tmp_path.glob("o?*") if not p.name.endswith(".lock")]


FAIL_ON_RANK_1 = """\
import os
if os.environ.get("RANK") == "1":  # only the second rank of the launch, after its job was validated
    import srlm_compute.train as train

    def _broken(job):
        raise RuntimeError("injected failure on one rank")

    train.load_examples = _broken
"""


def test_error_on_one_rank_fails_the_launch(tiny_model_dir, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FAIL_ON_RANK_1)
    env = cli_env()
    env["PYTHONPATH"] = str(hooks) + os.pathsep + env["PYTHONPATH"]
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)
    res = finish(start_ddp(_job("sft", tiny_model_dir, data, tmp_path / "out"), tmp_path, env=env))
    assert res.rc == 1, res.stderr[-3000:]
    errors = res.of("error")
    # rank 0 is stopped by torchrun (a cancellation); the one error reported is rank 1's cause
    assert len(errors) == 1 and res.last() == errors[0], res.events
    assert errors[0]["rank"] == 1 and errors[0]["kind"] == "runtime" and "signal" not in errors[0]
    assert errors[0]["message"] == "rank 1: RuntimeError: injected failure on one rank"
    assert not res.of("done") and not (tmp_path / "out").exists()


def test_distributed_job_key(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    base = {"mode": "sft", "model": str(model), "data": str(data), "output": str(tmp_path / "out")}
    for distributed, needle in (
        ({"strategy": "zero3"}, '\'strategy\' must be "ddp" | "fsdp"'),
        ({"strategy": "ddp", "fsdp_layer_class": "LlamaDecoderLayer"}, 'only used with strategy "fsdp"'),
        ({"strategy": "fsdp", "fsdp_layer_class": "not a class"}, "'fsdp_layer_class' must be a Python class name"),
        ({"nproc": 2}, "distributed: unknown key 'nproc'"),
        ("ddp", "'distributed' must be object | null"),
    ):
        res = run_cli("train", {**base, "distributed": distributed}, tmp_path)
        assert res.rc == 2 and needle in res.last()["message"], (distributed, res.last())


def test_rank_gating_and_root_cause(monkeypatch):
    read, write = os.pipe()
    monkeypatch.setattr(progress, "_EVENT_FD", write)
    try:
        progress.set_rank(1)
        progress.emit("progress", step=1)
        progress.emit("done")
        progress.emit("error", message="boom", kind="runtime")
        progress.set_rank(0)
        progress.emit("progress", step=1)
        progress.emit("error", message="bang", kind="runtime")
        progress.set_rank(None)
        progress.emit("done")
    finally:
        progress.set_rank(None)
        os.close(write)
    with os.fdopen(read) as fh:
        lines = [json.loads(line) for line in fh]
    assert lines == [
        {"event": "error", "message": "boom", "kind": "runtime", "rank": 1},
        {"event": "progress", "step": 1},
        {"event": "error", "message": "bang", "kind": "runtime", "rank": 0},
        {"event": "done"},
    ]
    # torchrun stops the other ranks with SIGTERM after a failure: their errors are not the cause
    cancelled = {"event": "error", "message": "cancelled by SIGTERM", "kind": "runtime", "signal": "SIGTERM", "rank": 0}
    cause = {"event": "error", "message": "RuntimeError: x", "kind": "runtime", "rank": 1}
    assert launch.root_cause([cancelled, cause]) is cause
    assert launch.root_cause([cancelled]) is cancelled and launch.root_cause([]) is None
    assert launch.split_argv(["--standalone", "--nproc-per-node", "2", "-m", "srlm_compute", "train", "--job", "j"]) == (
        ["--standalone", "--nproc-per-node", "2"],
        "train",
        "j",
    )
    for argv in (["-m", "srlm_compute", "generate", "--job", "j"], ["--nproc-per-node", "2", "train.py"]):
        with pytest.raises(launch.InvalidInput):
            launch.split_argv(argv)


def test_node_rank_from_torchrun_options():
    # a node other than 0 never sees rank 0's "done": its launcher must still exit 0 when torchrun does
    assert launch.node_rank(["--nnodes", "2", "--node-rank", "1", "--master-addr", "h"]) == 1
    assert launch.node_rank(["--node_rank=3"]) == 3 and launch.node_rank(["--node-rank=0"]) == 0
    assert launch.node_rank(["--standalone", "--nproc-per-node", "2"]) == 0
    assert launch.node_rank(["--node-rank", "x"]) == 0


def test_fsdp_checkpoint_layout_is_accepted(tmp_path):
    src = tmp_path / "checkpoint-2"
    (src / "pytorch_model_fsdp_0").mkdir(parents=True)
    (src / "optimizer_0").mkdir()
    for name in ("pytorch_model_fsdp_0/__0_0.distcp", "optimizer_0/__0_0.distcp", "scheduler.pt", "rng_state_0.pth", "rng_state_1.pth"):
        (src / name).write_bytes(os.urandom(32))
    (src / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    step_dir = checkpoints.publish(str(src), str(tmp_path / "ckpts"), 2, "dpo")
    assert checkpoints.verify(step_dir, "dpo")["step"] == 2
    (Path(step_dir) / "optimizer_0" / "__0_0.distcp").unlink()
    with pytest.raises(checkpoints.InvalidInput, match="optimizer_0/__0_0.distcp: checkpoint file missing"):
        checkpoints.verify(step_dir, "dpo")
