"""serve: the OpenAI-compatible HTTP server, on the tiny model (machinery, not quality)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from conftest import cli_env, parse_events, run_cli, write_jsonl

MAX_TOKENS = 8


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    err = open(tmp_path_factory.mktemp("serve") / "stderr.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "srlm_compute",
            "serve",
            "--model",
            str(tiny_model_dir),
            "--port",
            "0",
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--served-model-name",
            "tiny",
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env=cli_env(),
    )
    line = proc.stdout.readline()
    if not line:
        err.seek(0)
        pytest.fail(f"serve exited with {proc.wait()}: {err.read()[-3000:]}")
    ev = json.loads(line)
    assert ev["event"] == "listening" and ev["model"] == "tiny" and ev["device"] == "cpu"
    yield {"proc": proc, "url": f"http://127.0.0.1:{ev['port']}", "model": tiny_model_dir}
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    err.close()


def call(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server["url"] + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


CHAT = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "Say hi."}],
    "n": 2,
    "temperature": 0.7,
    "top_p": 0.9,
    "max_tokens": MAX_TOKENS,
    "seed": 12345,
}


def _check_choices(res, n, chat):
    assert len(res["choices"]) == n
    for i, c in enumerate(res["choices"]):
        assert c["index"] == i and c["finish_reason"] in ("stop", "length")
        text = c["message"]["content"] if chat else c["text"]
        assert isinstance(text, str)
        if chat:
            assert c["message"]["role"] == "assistant"
    u = res["usage"]
    assert 1 <= u["completion_tokens"] <= n * MAX_TOKENS and u["prompt_tokens"] > 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_models_chat_and_completions(server, tmp_path):
    status, res = call(server, "/v1/models")
    assert status == 200 and [m["id"] for m in res["data"]] == ["tiny"]

    status, chat = call(server, "/v1/chat/completions", CHAT)
    assert status == 200, chat
    assert chat["object"] == "chat.completion" and chat["model"] == "tiny"
    _check_choices(chat, 2, chat=True)
    # same request, same seed: same samples; and the same as the generate command's
    status, again = call(server, "/v1/chat/completions", CHAT)
    assert [c["message"]["content"] for c in again["choices"]] == [c["message"]["content"] for c in chat["choices"]]
    inp = write_jsonl(
        tmp_path / "req.jsonl",
        [{"id": "q", "messages": CHAT["messages"], "n": 2, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": MAX_TOKENS, "seed": 12345}],
    )
    out = tmp_path / "out.jsonl"
    res = run_cli("generate", {"model": str(server["model"]), "input": str(inp), "output": str(out), "device": "cpu"}, tmp_path)
    assert res.rc == 0, res.stderr[-2000:]
    line = json.loads(out.read_text())
    assert [o["text"] for o in line["outputs"]] == [c["message"]["content"] for c in chat["choices"]]
    assert sum(o["tokens"] for o in line["outputs"]) == chat["usage"]["completion_tokens"]
    assert [o["finish_reason"] for o in line["outputs"]] == [c["finish_reason"] for c in chat["choices"]]

    status, comp = call(server, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": MAX_TOKENS, "temperature": 0})
    assert status == 200, comp
    assert comp["object"] == "text_completion"
    _check_choices(comp, 1, chat=False)


def test_errors(server):
    status, res = call(server, "/v1/completions", {"prompt": "word " * 3000, "max_tokens": MAX_TOKENS})
    assert status == 400 and res["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 2048 tokens" in res["error"]["message"]
    status, res = call(server, "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]})
    assert status == 400 and res["error"]["type"] == "invalid_request_error" and "role" in res["error"]["message"]
    status, res = call(server, "/v1/completions", {"prompt": "x", "max_tokens": 0})
    assert status == 400 and "max_tokens" in res["error"]["message"]
    status, res = call(server, "/v1/completions", {"model": "other", "prompt": "x"})
    assert status == 404 and res["error"]["code"] == "model_not_found"
    status, res = call(server, "/v1/completions", {"prompt": "x", "stream": True})
    assert status == 400 and "stream" in res["error"]["message"]
    status, res = call(server, "/v1/nothing", {})
    assert status == 404


def test_concurrent_requests_are_batched_and_stats(server):
    call(server, "/v1/srlm/stats/reset", {})
    results: list = [None] * 6

    def one(i):
        results[i] = call(server, "/v1/completions", {"prompt": f"Number {i}", "max_tokens": MAX_TOKENS, "seed": i, "n": 2})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for status, res in results:
        assert status == 200, res
        _check_choices(res, 2, chat=False)
    status, stats = call(server, "/v1/srlm/stats")
    assert stats["requests"] == 6 and stats["in_flight"] == 0
    assert 1 <= stats["max_in_flight"] <= 6
    assert stats["max_batch_rows"] <= 8  # --batch-size 8: never more rows in one batch


def test_sigterm_mid_generation_exits_cleanly(server):
    """SIGTERM while the model thread is generating: exit 0 with a done event (not libtorch's abort)."""
    import time

    def long_request():
        try:
            call(server, "/v1/completions", {"prompt": "x", "max_tokens": 1500, "n": 4})
        except OSError:  # the server closes the connection when it exits
            pass

    slow = threading.Thread(target=long_request, daemon=True)
    slow.start()
    deadline = time.monotonic() + 30
    while call(server, "/v1/srlm/stats")[1]["in_flight"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    events = parse_events(out)
    assert events[-1]["event"] == "done" and events[-1]["requests"] >= 1


def test_bad_arguments_are_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "srlm_compute", "serve", "--model", str(tmp_path)], capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert proc.returncode == 2
    ev = parse_events(proc.stdout)[-1]
    assert ev["event"] == "error" and ev["kind"] == "invalid_input" and "no config.json" in ev["message"]


def test_request_lines_only_with_log_requests(tiny_model_dir, tmp_path):
    """A line per answered request on stderr only with --log-requests; a failed request is logged either way."""

    def run(extra):
        err_path = tmp_path / f"stderr{len(extra)}.log"
        with open(err_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "srlm_compute", "serve", "--model", str(tiny_model_dir), "--port", "0", "--device", "cpu", *extra],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=cli_env(),
            )
            port = json.loads(proc.stdout.readline())["port"]
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models").read()
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/nothing-here")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        return err_path.read_text()

    quiet = run([])
    assert '"GET /v1/models' not in quiet
    assert '"GET /v1/nothing-here' in quiet and " 404 " in quiet
    loud = run(["--log-requests"])
    assert '"GET /v1/models HTTP/1.1" 200' in loud
