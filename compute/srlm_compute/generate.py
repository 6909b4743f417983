"""Batched text generation over a JSON-lines request file.

    PYTHONPATH=compute python -m srlm_compute generate --job job.json

Job (model / data / runtime)::

    {"model": "<HF model dir>", "input": "requests.jsonl", "output": "outputs.jsonl",
     "device": "auto", "batch_size": 16, "threads": 0}

Request line::

    {"id": "q1", "messages": [{"role": "user", "content": "..."}],
     "n": 4, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256, "seed": 12345}

``messages`` go through the tokenizer's chat template with
``add_generation_prompt=True``; alternatively ``"prompt": "raw text"`` is used
verbatim (tokenized with the tokenizer's default special tokens, e.g. Gemma's
BOS). Defaults: n=1, temperature=1.0, top_p=1.0, max_new_tokens=256, seed=0;
temperature 0 is greedy. Unknown keys are rejected (exit 2, ``file:line``).

Output line, one per request, appended and flushed as each batch completes::

    {"id": "q1", "outputs": [{"text": "...", "tokens": 57, "finish_reason": "stop"}, ...]}

``text`` is only the new text (special tokens skipped). ``tokens`` counts the
generated tokens including the stop token when ``finish_reason`` is "stop";
"length" means ``max_new_tokens`` tokens were generated without a stop token.

Resume: an existing output file is kept; a trailing incomplete line is cut
away and requests whose id is already present are skipped.

Batching: requests are sorted by prompt length (longest first) and packed into
batches of at most ``batch_size`` sequences, each request contributing ``n``
rows (a request is never split; one with n > batch_size runs alone). Prompts
are left-padded; the pad token is EOS when the tokenizer has none.

Sampling and seeds: every row draws its randomness from its own
``torch.Generator`` seeded from (request seed, sample index), and temperature /
top-p / max_new_tokens are applied per row by a logits processor that picks
the token itself (``generate`` then runs greedily on its one-hot output). So a
request's samples do not depend on which other requests share its batch, up to
floating-point differences in the logits caused by padding.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from . import progress
from .jobs import GenerateJob, GenerateRequest, InvalidInput, load_job, read_jsonl

FAST_TOP_K = 256  # nucleus search starts in the top-k; falls back to a full sort when needed


@dataclass
class _Pending:
    req: GenerateRequest
    lineno: int
    prompt_ids: list[int]


def _row_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index * 7_919 + 0x5EED) % (2**63 - 1)


def read_done_ids(path: str) -> set[str]:
    """Ids already present in an output file; cuts a trailing incomplete line first."""
    if not os.path.exists(path):
        return set()
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1  # 0 when there is no complete line at all
            fh.truncate(cut)
            progress.log(f"{path}: cut {len(data) - cut} bytes of an incomplete trailing line")
            data = data[:cut]
    done: set[str] = set()
    for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            done.add(str(obj["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InvalidInput(f"{path}:{lineno}: existing output line is not a valid result line") from None
    return done


def make_row_sampler(torch, temperatures, top_ps, limits, seeds, prompt_len, eos_id):
    """A LogitsProcessor that chooses each row's next token with the row's own settings and RNG.

    It returns scores that are 0 at the chosen token and -inf elsewhere, so
    greedy decoding in ``generate`` emits exactly that token. Rows that reached
    their own ``max_new_tokens`` are forced to ``eos_id`` (the caller cuts the
    forced token away and reports "length").
    """
    from transformers import LogitsProcessor

    temps = torch.tensor(temperatures, dtype=torch.float32)
    tops = torch.tensor(top_ps, dtype=torch.float32)
    lims = torch.tensor(limits, dtype=torch.long)
    greedy = temps <= 0
    sample_rows = (~greedy).nonzero().flatten().tolist()
    generators = {r: torch.Generator().manual_seed(seeds[r]) for r in sample_rows}

    class RowSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - prompt_len
            device = scores.device
            batch, vocab = scores.shape
            logits = scores.float()
            chosen = torch.zeros(batch, dtype=torch.long, device=device)
            if greedy.any():
                g = greedy.to(device)
                chosen[g] = logits[g].argmax(-1)
            if sample_rows:
                rows = torch.tensor(sample_rows, device=device)
                t = temps[sample_rows].to(device)
                p = tops[sample_rows].to(device)
                u = torch.tensor(
                    [torch.rand((), generator=generators[r]).item() for r in sample_rows],
                    dtype=torch.float32,
                    device=device,
                )
                probs = torch.softmax(logits[rows] / t[:, None], dim=-1)
                picked = torch.empty(len(sample_rows), dtype=torch.long, device=device)
                # Nucleus inside the top-k when the top-k mass already covers top_p.
                k = min(vocab, FAST_TOP_K)
                top_v, top_i = probs.topk(k, dim=-1)
                cum = top_v.cumsum(-1)
                fast = (p < 1.0) & (cum[:, -1] >= p)
                if fast.any():
                    keep = (cum[fast] - top_v[fast]) < p[fast, None]
                    w = top_v[fast] * keep
                    cdf = w.cumsum(-1)
                    x = (u[fast] * cdf[:, -1])[:, None]
                    idx = torch.searchsorted(cdf, x, right=True).clamp_(max=k - 1)
                    picked[fast] = top_i[fast].gather(1, idx).squeeze(1)
                full = ~fast
                if full.any():
                    for j in full.nonzero().flatten().tolist():
                        pj = probs[j]
                        if p[j] < 1.0:
                            sv, si = pj.sort(descending=True)
                            sc = sv.cumsum(-1)
                            sv = sv * ((sc - sv) < p[j])
                            cdf = sv.cumsum(-1)
                            i = torch.searchsorted(cdf, (u[j] * cdf[-1]).reshape(1), right=True).clamp_(max=vocab - 1)
                            picked[j] = si[i[0]]
                        else:
                            cdf = pj.cumsum(-1)
                            i = torch.searchsorted(cdf, (u[j] * cdf[-1]).reshape(1), right=True).clamp_(max=vocab - 1)
                            picked[j] = i[0]
                chosen[rows] = picked
            over = (lims <= step).to(device)
            if over.any():
                chosen[over] = eos_id
            out = torch.full_like(scores, float("-inf"))
            out.scatter_(1, chosen[:, None], 0.0)
            return out

    return RowSampler()


def _stop_ids(tokenizer, model) -> list[int]:
    ids: list[int] = []
    gen = model.generation_config.eos_token_id
    for i in (gen if isinstance(gen, (list, tuple)) else [gen]) + [tokenizer.eos_token_id]:
        if isinstance(i, int) and i >= 0 and i not in ids:
            ids.append(i)
    if not ids:
        raise RuntimeError("model has no eos token id (neither tokenizer nor generation_config)")
    return ids


def _batches(pending: list[_Pending], batch_size: int) -> list[list[_Pending]]:
    order = sorted(pending, key=lambda p: len(p.prompt_ids), reverse=True)
    batches: list[list[_Pending]] = []
    cur: list[_Pending] = []
    rows = 0
    for p in order:
        if cur and rows + p.req.n > batch_size:
            batches.append(cur)
            cur, rows = [], 0
        cur.append(p)
        rows += p.req.n
    if cur:
        batches.append(cur)
    return batches


def main(job_path: str) -> int:
    job = load_job(GenerateJob, job_path)
    t_start = time.monotonic()

    # data: validate every request line before loading anything heavy
    records = read_jsonl(job.input, GenerateRequest)
    seen: dict[str, int] = {}
    for lineno, req in records:
        if req.id in seen:
            raise InvalidInput(f"{job.input}:{lineno}: duplicate id {req.id!r} (first on line {seen[req.id]})")
        seen[req.id] = lineno
    done_ids = read_done_ids(job.output)
    todo = [(lineno, r) for lineno, r in records if r.id not in done_ids]
    skipped = len(records) - len(todo)

    from .runtime import quiet_libraries

    quiet_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from .runtime import peak_rss_mb, resolve_device, set_threads

    device = resolve_device(job.device)
    set_threads(job.threads)
    progress.emit(
        "start",
        cmd="generate",
        model=job.model,
        device=device,
        total=len(records),
        skipped=skipped,
        pending=len(todo),
        threads=torch.get_num_threads(),
    )
    if not todo:
        progress.emit("done", done=len(records), skipped=skipped, tokens=0, elapsed_s=0.0, tokens_per_s=0.0)
        return 0

    # model
    tokenizer = AutoTokenizer.from_pretrained(job.model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(job.model, dtype=dtype).to(device)
    model.eval()
    stop_ids = _stop_ids(tokenizer, model)
    progress.log(f"loaded {job.model} on {device} ({dtype}); stop ids {stop_ids}")

    # prompts
    pending: list[_Pending] = []
    for lineno, req in todo:
        if req.messages is not None:
            if not tokenizer.chat_template:
                raise InvalidInput(f"{job.input}:{lineno}: 'messages' given but the model has no chat template")
            text = tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(req.prompt)["input_ids"]
        if not ids:
            raise InvalidInput(f"{job.input}:{lineno}: prompt is empty after tokenization")
        pending.append(_Pending(req=req, lineno=lineno, prompt_ids=ids))

    out_fd = os.open(job.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n_done = skipped
    n_tokens = 0
    t_gen = time.monotonic()
    pad_id = tokenizer.pad_token_id
    try:
        for batch in _batches(pending, job.batch_size):
            rows: list[tuple[_Pending, int]] = [(p, j) for p in batch for j in range(p.req.n)]
            width = max(len(p.prompt_ids) for p in batch)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for r, (p, _) in enumerate(rows):
                L = len(p.prompt_ids)
                input_ids[r, width - L :] = torch.tensor(p.prompt_ids)
                attention[r, width - L :] = 1
            limits = [p.req.max_new_tokens for p, _ in rows]
            sampler = make_row_sampler(
                torch,
                temperatures=[p.req.temperature for p, _ in rows],
                top_ps=[p.req.top_p for p, _ in rows],
                limits=limits,
                seeds=[_row_seed(p.req.seed, j) for p, j in rows],
                prompt_len=width,
                eos_id=stop_ids[0],
            )
            gen_config = GenerationConfig(
                max_new_tokens=max(limits),
                do_sample=False,
                num_beams=1,
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
                use_cache=True,
            )
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    generation_config=gen_config,
                    logits_processor=[sampler],
                )
            new = out[:, width:].tolist()

            results: dict[str, list[dict]] = {p.req.id: [] for p in batch}
            stop_set = set(stop_ids)
            for r, (p, _) in enumerate(rows):
                seq = new[r][: limits[r]]
                end = next((i for i, t in enumerate(seq) if t in stop_set), None)
                if end is None:
                    kept, finish, count = seq, "length", len(seq)
                else:
                    kept, finish, count = seq[:end], "stop", end + 1
                text = tokenizer.decode(kept, skip_special_tokens=True)
                results[p.req.id].append({"text": text, "tokens": count, "finish_reason": finish})
                n_tokens += count
            for p in batch:
                line = json.dumps({"id": p.req.id, "outputs": results[p.req.id]}, ensure_ascii=False) + "\n"
                os.write(out_fd, line.encode("utf-8"))  # one write per line: never a torn line
            n_done += len(batch)
            progress.emit(
                "progress",
                done=n_done,
                total=len(records),
                tokens=n_tokens,
                elapsed_s=round(time.monotonic() - t_start, 3),
            )
    finally:
        os.close(out_fd)

    gen_s = time.monotonic() - t_gen
    progress.emit(
        "done",
        done=n_done,
        skipped=skipped,
        tokens=n_tokens,
        elapsed_s=round(time.monotonic() - t_start, 3),
        generate_s=round(gen_s, 3),
        tokens_per_s=round(n_tokens / gen_s, 2) if gen_s > 0 else 0.0,
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    return 0
