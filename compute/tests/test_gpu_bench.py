"""bench/gpu.py --smoke: the GPU check's whole path (workers, compute's CLIs, report) on CPU with tiny shapes."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import COMPUTE_DIR, cli_env


def test_gpu_check_smoke_reports_every_measurement(model_dir, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(COMPUTE_DIR / "bench" / "gpu.py"), "--smoke", "--work", str(tmp_path / "work"), "--tokenizer", str(model_dir)],
        capture_output=True,
        text=True,
        env=cli_env(OUT=str(out)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "gpu-check.json").read_text())
    rows = {(r["measurement"], r["engine_id"]): r for r in report["rows"]}
    assert set(rows) == {
        ("generate", "baseline"),
        ("generate", "compute"),
        ("generate", "vllm"),
        ("dpo-step", "baseline"),
        ("dpo-step", "compute"),
    }, rows.keys()
    for key in (("generate", "baseline"), ("generate", "compute"), ("dpo-step", "baseline"), ("dpo-step", "compute")):
        row = rows[key]
        assert row["status"] == "ok", row
        assert isinstance(row["tokens_per_s"], float) and row["tokens_per_s"] > 0, row
        assert row["shape"] == "1.1b-smoke" and row["ratio"] is not None
        assert row["mfu"] is None  # CPU: no peak, no MFU
    vllm = rows[("generate", "vllm")]
    if report["machine"]["importable"]["vllm"] is True:
        assert vllm["status"] in ("ok", "error"), vllm
    else:
        assert vllm["status"] == "not installed" and "vllm not installed on this machine" in vllm["notes"], vllm
    # the comparison is fair: compute's measured shard made batch x new tokens (minus rows ended by EOS)
    gen = rows[("generate", "compute")]["details"]
    assert gen["rows"] == 4 and 0 < gen["tokens"] <= 4 * 8
    assert rows[("generate", "baseline")]["details"]["tokens"] == 4 * 8
    assert rows[("dpo-step", "compute")]["details"]["tokens_per_step"] == 2 * 2 * (16 + 16)
    assert report["machine"]["versions"]["torch"] and report["models"]["1.1b"]["params"] > 0
    assert "tokenizer from" in report["models"]["1.1b"]["tokenizer"]
    md = (out / "gpu-check.md").read_text()
    assert "| measurement | shape | engine | tokens/s | MFU | ratio vs baseline | target | met? | notes |" in md
    assert "| dpo-step | 1.1b-smoke | srlm_compute train (dpo, TRL) |" in md
    assert "| generate | 1.1b-smoke | transformers generate (plain) |" in proc.stdout  # printed too
    assert (out / "logs" / "dpo-compute-1.1b.log").is_file()
