"""Training checkpoints, kill + resume, and torn-checkpoint rejection (tiny random model, CPU, 1 thread)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CliResult, parse_events, run_cli, start_cli, write_jsonl
from safetensors import safe_open

from srlm_compute import checkpoints

SFT_ROWS = [{"id": str(i), "prompt": f"Question {i}: what is {i} plus {i}?", "completion": f"The answer is {2 * i}."} for i in range(6)]
DPO_ROWS = [{"id": str(i), "prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": f"No idea about {i}."} for i in range(4)]


def _job(mode, model, data, out, ckpt_dir, **extra):
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
        "checkpoint_every": 2,
        "checkpoint_dir": str(ckpt_dir),
        **extra,
    }


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    with safe_open(str(model_dir / "model.safetensors"), framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _check_manifest(step_dir: Path, step: int, mode: str) -> dict:
    manifest = json.loads((step_dir / "manifest.json").read_text())
    assert manifest["kind"] == "train-checkpoint" and manifest["step"] == step and manifest["mode"] == mode
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= listed
    for f in manifest["files"]:
        data = (step_dir / f["path"]).read_bytes()
        assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
    assert json.loads((step_dir / "trainer_state.json").read_text())["global_step"] == step
    return manifest


@pytest.fixture(scope="module")
def dpo_run(tiny_model_dir, tmp_path_factory):
    """A short DPO job with checkpoints, started in the background as soon as a test asks for it.

    The SFT kill/resume test requests it too, only so that this run overlaps with that
    test's processes (each process spends ~10 s single-threaded importing torch / TRL).
    """
    root = tmp_path_factory.mktemp("dpo")
    data = write_jsonl(root / "dpo.jsonl", DPO_ROWS)
    out, ckpt = root / "dpo-out", root / "dpo-ckpt"
    proc = start_cli("train", _job("dpo", tiny_model_dir, data, out, ckpt, max_steps=3, checkpoint_every=1), root)
    result = {}

    def wait():
        if not result:
            stdout, _ = proc.communicate(timeout=600)
            result.update(
                rc=proc.returncode, events=parse_events(stdout), out=out, ckpt=ckpt, stderr=Path(proc.args[-1] + ".stderr").read_text()
            )
        return result

    yield wait
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sft_killed_after_checkpoint_resumes_to_identical_weights(tiny_model_dir, tmp_path, dpo_run):
    data = write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS)  # 6 examples, batch 2, 2 epochs: 6 steps, 3 per epoch
    ref_out, run_out = tmp_path / "ref", tmp_path / "run"
    ref_ckpt, run_ckpt = tmp_path / "ckpt-ref", tmp_path / "ckpt-run"
    step4 = run_ckpt / "step-000004"  # in the middle of the second epoch
    resume_job = _job("sft", tiny_model_dir, data, run_out, run_ckpt, resume_from=str(step4))
    # The uninterrupted reference and the run to be killed, side by side (one thread each).
    ref = start_cli("train", _job("sft", tiny_model_dir, data, ref_out, ref_ckpt), tmp_path)
    victim = start_cli("train", _job("sft", tiny_model_dir, data, run_out, run_ckpt), tmp_path)
    resumed = None
    try:
        seen = []
        for line in victim.stdout:
            seen.append(json.loads(line))
            if seen[-1]["event"] == "checkpoint" and seen[-1]["step"] == 4:
                victim.kill()  # SIGKILL, right after the step-4 checkpoint was published
                break
        victim.wait(timeout=60)
        assert victim.returncode == -9, seen[-3:]
        assert not run_out.exists()  # nothing published by the killed run
        # Resume the killed run from its step-4 checkpoint (while the reference finishes).
        resumed = start_cli("train", resume_job, tmp_path)
        ref_stdout, _ = ref.communicate(timeout=600)
        resumed_stdout, _ = resumed.communicate(timeout=600)
    finally:
        for proc in (ref, victim, resumed):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert [e["step"] for e in seen if e["event"] == "checkpoint"] == [2, 4]
    assert seen[-1]["dir"] == str(step4) and os.path.isabs(seen[-1]["dir"])
    _check_manifest(run_ckpt / "step-000002", 2, "sft")
    _check_manifest(step4, 4, "sft")

    assert ref.returncode == 0
    ref_events = parse_events(ref_stdout)
    assert ref_events[0]["resumed_from_step"] == 0
    ref_progress = [e for e in ref_events if e["event"] == "progress"]
    assert [e["step"] for e in ref_progress] == list(range(1, 7))
    # a checkpoint every 2 steps, but none at the last step (the output follows right away)
    assert [e["step"] for e in ref_events if e["event"] == "checkpoint"] == [2, 4]
    assert sorted(p.name for p in ref_ckpt.iterdir()) == ["step-000002", "step-000004"]
    assert not list(ref_out.glob("checkpoint-*"))
    assert json.loads((ref_out / "metrics.json").read_text())["resumed_from_step"] == 0

    assert resumed.returncode == 0, Path(resumed.args[-1] + ".stderr").read_text()[-3000:]
    res = parse_events(resumed_stdout)
    assert res[0]["event"] == "start" and res[0]["resumed_from_step"] == 4
    progress = [e for e in res if e["event"] == "progress"]
    assert [e["step"] for e in progress] == [5, 6]
    assert not [e for e in res if e["event"] == "checkpoint"]
    assert [e["loss"] for e in progress] == [e["loss"] for e in ref_progress[4:]]
    metrics = json.loads((run_out / "metrics.json").read_text())
    assert (metrics["resumed_from_step"], metrics["steps"], metrics["steps_run"]) == (4, 6, 2)
    assert res[-1]["event"] == "done" and res[-1]["resumed_from_step"] == 4
    assert not list(run_ckpt.glob("*.partial"))

    ref_w, run_w = _weights(ref_out), _weights(run_out)
    assert ref_w.keys() == run_w.keys()
    max_diff = max(float(np.abs(ref_w[k] - run_w[k]).max()) for k in ref_w)
    assert all(np.allclose(ref_w[k], run_w[k], rtol=0, atol=1e-6) for k in ref_w), max_diff
    assert max_diff == 0.0  # bit-identical on CPU: RNG, data position, optimizer and scheduler all restored

    # A torn copy of a real checkpoint is refused before anything is loaded.
    torn = tmp_path / "torn"
    shutil.copytree(run_ckpt / "step-000002", torn)
    with open(torn / "optimizer.pt", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    res = run_cli("train", _job("sft", tiny_model_dir, data, tmp_path / "o3", tmp_path / "c3", resume_from=str(torn)), tmp_path)
    assert res.rc == 2 and res.last()["kind"] == "invalid_input", res.stderr[-2000:]
    assert "optimizer.pt" in res.last()["message"] and "sha256" in res.last()["message"]


def test_dpo_with_checkpoints(dpo_run):
    run = dpo_run()
    assert run["rc"] == 0, run["stderr"][-3000:]
    out, ckpt = run["out"], run["ckpt"]
    res = CliResult(rc=run["rc"], events=run["events"], stderr=run["stderr"])
    assert [e["step"] for e in res.of("progress")] == [1, 2, 3]
    assert all("rewards_accuracy" in e for e in res.of("progress"))
    events = res.of("checkpoint")
    assert [(e["step"], e["dir"]) for e in events] == [(1, str(ckpt / "step-000001")), (2, str(ckpt / "step-000002"))]
    for e in events:
        _check_manifest(Path(e["dir"]), e["step"], "dpo")
        assert checkpoints.verify(e["dir"], "dpo")["step"] == e["step"]
    # checkpoint events come right after their step's progress event
    names = [(e["event"], e.get("step")) for e in res.events if e["event"] in ("progress", "checkpoint")]
    assert names == [("progress", 1), ("checkpoint", 1), ("progress", 2), ("checkpoint", 2), ("progress", 3)]
    assert (out / "model.safetensors").is_file() and not list(out.glob("checkpoint-*"))


def _fake_checkpoint(root: Path, step: int = 3, mode: str = "sft") -> Path:
    """A checkpoint-shaped directory with arbitrary bytes, published with a real manifest."""
    src = root / f"checkpoint-{step}"
    src.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "config.json"):
        (src / name).write_bytes(os.urandom(64) + name.encode())
    (src / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return Path(checkpoints.publish(str(src), str(root / "ckpts"), step, mode))


@pytest.mark.parametrize(
    "damage, needles",
    [
        ("flip", ("optimizer.pt", "sha256 mismatch")),
        ("delete", ("rng_state.pth", "missing")),
        ("truncate", ("model.safetensors", "bytes")),
        ("no-manifest", ("manifest.json", "manifest missing")),
        ("unlisted", ("scheduler.pt", "not a full checkpoint")),
        ("mode", ("'dpo'", "'sft'")),
        ("step", ("global_step 7", "step 3")),
    ],
)
def test_torn_checkpoint_is_rejected(tmp_path, damage, needles):
    step_dir = _fake_checkpoint(tmp_path, mode="dpo" if damage == "mode" else "sft")
    assert step_dir == tmp_path / "ckpts" / "step-000003" and not (tmp_path / "checkpoint-3").exists()
    assert checkpoints.verify(str(step_dir), "dpo" if damage == "mode" else "sft")["step"] == 3
    manifest_path = step_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if damage == "flip":
        data = bytearray((step_dir / "optimizer.pt").read_bytes())
        data[5] ^= 1
        (step_dir / "optimizer.pt").write_bytes(bytes(data))
    elif damage == "delete":
        (step_dir / "rng_state.pth").unlink()
    elif damage == "truncate":
        with open(step_dir / "model.safetensors", "r+b") as fh:
            fh.truncate(10)
    elif damage == "no-manifest":
        manifest_path.unlink()
    elif damage == "unlisted":
        manifest["files"] = [f for f in manifest["files"] if f["path"] != "scheduler.pt"]
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "step":
        (step_dir / "trainer_state.json").write_text(json.dumps({"global_step": 7}))
        for f in manifest["files"]:  # a consistent manifest around an inconsistent state
            if f["path"] == "trainer_state.json":
                data = (step_dir / "trainer_state.json").read_bytes()
                f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
        manifest_path.write_text(json.dumps(manifest))

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    job = {"mode": "sft", "model": str(model), "data": str(data), "output": str(tmp_path / "out"), "resume_from": str(step_dir)}
    res = run_cli("train", job, tmp_path)
    assert res.rc == 2, res.stderr[-2000:]
    err = res.last()
    assert err["event"] == "error" and err["kind"] == "invalid_input"
    for needle in needles:
        assert needle in err["message"], err["message"]
    assert not (tmp_path / "out.partial").exists() and not (tmp_path / "out.lock").exists()


def test_checkpoint_job_keys(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    base = {"mode": "sft", "model": str(model), "data": str(data), "output": str(tmp_path / "out")}
    for extra, needle in (
        ({"checkpoint_every": 2}, "'checkpoint_dir' is required"),
        ({"checkpoint_every": -1, "checkpoint_dir": str(tmp_path / "c")}, "'checkpoint_every'"),
        ({"checkpoint_every": 2, "checkpoint_dir": str(tmp_path / "out" / "c")}, "inside the output directory"),
        ({"checkpoint_every": 2, "checkpoint_dir": str(tmp_path / "no" / "c")}, "parent directory does not exist"),
        ({"resume_from": str(tmp_path / "nope")}, "'resume_from'"),
        ({"checkpoint_every": "2", "checkpoint_dir": str(tmp_path / "c")}, "'checkpoint_every'"),
    ):
        res = run_cli("train", {**base, **extra}, tmp_path)
        assert res.rc == 2 and needle in res.last()["message"], (extra, res.last())
