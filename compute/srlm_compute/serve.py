"""A small OpenAI-compatible HTTP server over the local engine: a laptop-scale stand-in for vLLM.

    PYTHONPATH=compute python -m srlm_compute serve --model <HF model dir> \\
        [--host 127.0.0.1] [--port 8000] [--device auto] [--batch-size 8] [--threads 0] \\
        [--served-model-name NAME] [--log-requests]

Endpoints (standard library ``http.server``, one thread per connection):

* ``GET /v1/models``: ``{"object": "list", "data": [{"id": NAME, "object": "model", ...}]}``;
  NAME is ``--served-model-name``, default the model directory's basename.
* ``POST /v1/chat/completions``: ``{"model", "messages", "n", "temperature", "top_p",
  "max_tokens", "seed"}``; ``messages`` go through the model's chat template. Answers
  ``choices[i].message.content``.
* ``POST /v1/completions``: the same with ``"prompt"`` (a string, used verbatim). Answers
  ``choices[i].text``.
* ``GET /v1/srlm/stats``: ``{"requests", "in_flight", "max_in_flight", "batches",
  "max_batch_rows"}`` (requests in flight count from the request's arrival to its answer);
  ``POST /v1/srlm/stats/reset`` sets the counters back to 0.

Generation is the ``generate`` command's (:func:`srlm_compute.generate.generate_batch`): the
same sampler and per-row seeds, so a request gives the samples a job file line with the
same prompt / settings / ``seed`` gives (up to floating-point differences from padding when
it shares a batch) (defaults: n=1, temperature=1.0, top_p=1.0, max_tokens=256,
seed=0). ``finish_reason`` is "stop" or "length"; ``usage`` has ``prompt_tokens`` (the
prompt's, counted once), ``completion_tokens`` (over all n samples: generated tokens, stop
tokens included) and ``total_tokens``.

Concurrency: request threads put their work on a queue; one model thread takes what is
queued (up to ``--batch-size`` rows, a request is never split) and runs it as one batch, so
concurrent requests are safe and batched together.

Errors are OpenAI-style ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad
body (``invalid_request_error``), 400 with code ``context_length_exceeded`` and a message
containing "maximum context length" when prompt tokens + max_tokens exceed the model's
context, 404 for an unknown path or model name, 500 when generation fails. Not supported:
``stream`` (400), ``stop``, ``logprobs`` and the other parameters (ignored).

Events on stdout: ``{"event": "listening", "host", "port", "model", "device"}`` once the model
is loaded and the socket accepts connections (``--port 0`` picks a free port), and
``{"event": "done", "requests": N}`` on SIGTERM / SIGINT, after which the process exits 0.
Logs go to stderr: a line per request only with ``--log-requests`` (errors always).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import progress
from .jobs import GenerateRequest, InvalidInput, parse_record

MAX_BODY = 16 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code


@dataclass
class _Work:
    item: object  # generate._Pending
    done: threading.Event = field(default_factory=threading.Event)
    result: list[dict] | None = None
    error: BaseException | None = None


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.batches = 0
        self.max_batch_rows = 0

    def enter(self) -> None:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def batch(self, rows: int) -> None:
        with self.lock:
            self.batches += 1
            self.max_batch_rows = max(self.max_batch_rows, rows)

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "batches": self.batches,
                "max_batch_rows": self.max_batch_rows,
            }


class Engine:
    """The model and the one thread that runs it; request threads call :meth:`submit`."""

    def __init__(self, loaded, batch_size: int):
        import torch

        self.torch = torch
        self.loaded = loaded
        self.batch_size = batch_size
        self.queue: queue.Queue[_Work | None] = queue.Queue()
        self.stats = Stats()
        self.thread = threading.Thread(target=self._loop, name="srlm-model", daemon=True)
        self.thread.start()

    def submit(self, item) -> list[dict]:
        work = _Work(item)
        self.queue.put(work)
        work.done.wait()
        if work.error is not None:
            raise work.error
        return work.result  # type: ignore[return-value]

    def stop(self) -> None:
        self.queue.put(None)

    def _loop(self) -> None:
        from .generate import generate_batch

        held: _Work | None = None
        context = self.loaded.context
        while True:
            first = held if held is not None else self.queue.get()
            held = None
            if first is None:
                return
            batch = [first]
            rows = first.item.req.n
            width = len(first.item.prompt_ids)
            max_new = first.item.req.max_new_tokens
            # take what is already queued: never split a request, and keep the batch's longest
            # prompt + largest max_tokens within the context (every row runs that long)
            while rows < self.batch_size:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)  # stop after this batch
                    break
                w, m = max(width, len(nxt.item.prompt_ids)), max(max_new, nxt.item.req.max_new_tokens)
                if rows + nxt.item.req.n > self.batch_size or (context is not None and w + m > context):
                    held = nxt
                    break
                batch.append(nxt)
                rows, width, max_new = rows + nxt.item.req.n, w, m
            # same (id-keyed) results as the generate command; ids here are unique per request
            self.stats.batch(rows)
            try:
                results = generate_batch(self.torch, self.loaded, [w.item for w in batch])
                for w in batch:
                    w.result = results[w.item.req.id]
            except BaseException as exc:  # noqa: BLE001 - handed to each waiting request
                for w in batch:
                    w.error = exc
            for w in batch:
                w.done.set()


def _parse(body: dict, chat: bool) -> GenerateRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if body.get("stream"):
        raise ApiError(400, "stream=true is not supported by this server", code="unsupported_parameter")
    key = "messages" if chat else "prompt"
    if key not in body:
        raise ApiError(400, f"'{key}' is required", code="missing_required_parameter")
    prompt = body[key]
    if not chat and isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise ApiError(400, "'prompt' must be a string (or a list of exactly one string)")
        prompt = prompt[0]
    record = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", key: prompt}
    for api, ours in (("n", "n"), ("temperature", "temperature"), ("top_p", "top_p"), ("max_tokens", "max_new_tokens"), ("seed", "seed")):
        if body.get(api) is not None:
            value = body[api]
            if ours in ("temperature", "top_p") and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            record[ours] = value
    try:
        return parse_record(GenerateRequest, record, "request")
    except InvalidInput as exc:
        raise ApiError(400, str(exc).replace("max_new_tokens", "max_tokens")) from None


def _error_body(err: ApiError) -> dict:
    return {"error": {"message": err.message, "type": err.type, "param": None, "code": err.code}}


def make_handler(engine: Engine, served_name: str, log_requests: bool = False):
    from .generate import _Pending, encode_prompt, too_long_reason

    tokenizer = engine.loaded.tokenizer
    context = engine.loaded.context

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "srlm-serve"

        def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
            progress.log(f"serve: {self.address_string()} {format % args}")

        def log_request(self, code="-", size="-"):
            # one line per request only with --log-requests (a run sends hundreds of thousands); errors always
            if log_requests or (isinstance(code, int) and code >= 400) or (str(code).isdigit() and int(str(code)) >= 400):
                super().log_request(code, size)

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, err: ApiError) -> None:
            self._send(err.status, _error_body(err))

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": served_name, "object": "model", "created": 0, "owned_by": "srlm"}]})
            elif path == "/v1/srlm/stats":
                self._send(200, engine.stats.snapshot())
            elif path in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._error(ApiError(404, f"no such path: {self.path}", code="not_found"))

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.close_connection = True
                self._error(ApiError(413, f"request body over {MAX_BODY} bytes"))
                return
            try:
                raw = self.rfile.read(length) if length else b""
            except OSError:  # the client went away (reset) mid-body
                raw = b""
            if len(raw) < length:  # a truncated request: nobody to answer
                self.close_connection = True
                progress.log(f"serve: {self.address_string()} {self.path}: body cut off after {len(raw)} of {length} bytes")
                return
            if path == "/v1/srlm/stats/reset":
                with engine.stats.lock:
                    engine.stats.reset()
                self._send(200, engine.stats.snapshot())
                return
            if path not in ("/v1/chat/completions", "/v1/completions"):
                self._error(ApiError(404, f"no such path: {self.path}", code="not_found"))
                return
            engine.stats.enter()
            try:
                try:
                    answer = (200, self._complete(path == "/v1/chat/completions", raw))
                finally:
                    engine.stats.leave()
            except ApiError as err:
                answer = (err.status, _error_body(err))
            except Exception as exc:  # noqa: BLE001 - the HTTP boundary
                progress.log(f"serve: generation failed: {type(exc).__name__}: {exc}")
                answer = (500, _error_body(ApiError(500, f"{type(exc).__name__}: {exc}", type_="server_error")))
            try:
                self._send(*answer)
            except OSError as exc:  # the client is gone
                self.close_connection = True
                progress.log(f"serve: {self.address_string()} {self.path}: answer not delivered: {exc}")

        def _complete(self, chat: bool, raw: bytes) -> dict:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError(400, f"the request body is not JSON: {exc}") from None
            req = _parse(body, chat)
            model = body.get("model")
            if model is not None and model != served_name:
                raise ApiError(404, f"the model `{model}` does not exist; this server serves `{served_name}`", code="model_not_found")
            try:
                ids = encode_prompt(tokenizer, req, "request")
            except InvalidInput as exc:
                raise ApiError(400, str(exc)) from None
            reason = too_long_reason(len(ids), req.max_new_tokens, context)
            if reason is not None:
                raise ApiError(
                    400,
                    f"This model's maximum context length is {context} tokens. However, you requested "
                    f"{len(ids) + req.max_new_tokens} tokens ({len(ids)} in the messages, {req.max_new_tokens} "
                    f"in the completion). Please reduce the length of the messages or completion.",
                    code="context_length_exceeded",
                )
            outputs = engine.submit(_Pending(req=req, lineno=0, prompt_ids=ids))
            choices = []
            for i, out in enumerate(outputs):
                choice = {"index": i, "finish_reason": out["finish_reason"], "logprobs": None}
                if chat:
                    choice["message"] = {"role": "assistant", "content": out["text"]}
                else:
                    choice["text"] = out["text"]
                choices.append(choice)
            completion = sum(o["tokens"] for o in outputs)
            prompt_tokens = len(ids)
            return {
                "id": req.id,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": served_name,
                "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion},
            }

    return Handler


USAGE = (
    "usage: python -m srlm_compute serve --model DIR [--host 127.0.0.1] [--port 8000] [--device auto] "
    "[--batch-size 8] [--threads 0] [--served-model-name NAME]"
)


class _ArgParser(argparse.ArgumentParser):
    def error(self, message):  # an InvalidInput (exit 2 with an error event) instead of argparse's exit
        raise InvalidInput(f"{USAGE} ({message})")


def _args(argv: list[str]) -> argparse.Namespace:
    p = _ArgParser(prog="python -m srlm_compute serve", add_help=False)
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--log-requests", action="store_true")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        raise InvalidInput(f"--model {args.model}: not a model directory (no config.json)")
    if args.batch_size < 1:
        raise InvalidInput(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port must be in 0..65535, got {args.port}")
    return args


def main(argv: list[str]) -> int:
    """Serves until SIGTERM / SIGINT, then exits the process with 0 (does not return)."""
    args = _args(argv)
    from .runtime import quiet_libraries, resolve_device, set_threads

    quiet_libraries(datasets=False)
    from .generate import load_model

    device = resolve_device(args.device)
    set_threads(args.threads)
    loaded = load_model(args.model, device)
    served = args.served_model_name or os.path.basename(os.path.normpath(args.model))
    engine = Engine(loaded, args.batch_size)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(engine, served, args.log_requests))
    server.daemon_threads = True
    port = server.server_address[1]
    progress.log(f"serve: {args.model} as {served!r} on {device}, context {loaded.context}, http://{args.host}:{port}/v1")
    progress.emit("listening", host=args.host, port=port, model=served, device=device)
    try:
        server.serve_forever(poll_interval=0.2)
    except progress.Cancelled as exc:  # SIGTERM / SIGINT: stop accepting, answer nothing more
        progress.log(f"serve: {exc}; shutting down")
    finally:
        server.server_close()
        engine.stop()
    progress.emit("done", requests=engine.stats.snapshot()["requests"])
    # The model thread may be inside generate(): interpreter shutdown would then abort in
    # libtorch ("terminate called without an active exception", exit 134). Nothing is left to
    # flush (events are written straight to the fd), so leave at once; open connections close.
    sys.stderr.flush()
    os._exit(0)
