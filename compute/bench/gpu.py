"""GPU check: generation and DPO-step throughput of srlm_compute next to plain transformers, on one GPU.

    bash compute/bench/gpu.sh                 # on the GPU machine (OUT=<dir> for the result files)
    bash compute/bench/gpu.sh --prepare       # here, before: copies SmolLM2's tokenizer to compute/bench/.gpu-tokenizer
    PYTHONPATH=compute python compute/bench/gpu.py --smoke    # CPU, tiny shapes, ~1 min (the test)

Models are randomly initialised Llama shapes (no weights can be fetched on the GPU machine):
``135m`` = SmolLM2-135M (hidden 576, MLP 1536, 30 layers, 9 heads / 3 kv heads, vocab 49152,
tied embeddings) and ``1.1b`` = TinyLlama-1.1B (hidden 2048, MLP 5632, 22 layers, 32 heads /
4 kv heads, vocab 32000). Each is saved as a Hugging Face directory (bf16 on CUDA) with
SmolLM2's tokenizer, through ``tiny_model.py``'s helpers (``special_token_ids``,
``save_model_dir``), so compute's commands load it like any model. The tokenizer's chat template
is replaced by plain ChatML without SmolLM2's default system prompt, whose tokens ("SmolLM")
lie outside the 32000 vocabulary; prompts are built from single-token words below id 32000.
Tokenizer source: ``--tokenizer`` / ``$SRLM_BENCH_TOKENIZER``, else ``compute/bench/.gpu-tokenizer``
(``--prepare``; git-ignored: carry it to the GPU machine), else an imported SmolLM2 directory
(``$SRLM_TEST_MODEL_DIR``, pytest's cache, ``~/.cache/srlm/models``); without any, a word-level
tokenizer is synthesised (said in the output; token ids, not text, drive every measurement).

Measurements, each in its own process with a hard timeout (killed and recorded as an error row;
the check goes on) inside a total budget (``--budget-s``, default 450 s; what no longer fits is
a "skipped" row):

* generate / baseline: ``model.generate`` of plain transformers (bf16, SDPA), batch 256,
  128 prompt + 256 new tokens, sampling (temperature 1, top_p 1, no top-k), EOS suppressed
  (``min_new_tokens``) so every row makes 256 tokens; one short warm-up call first.
* generate / compute: ``python -m srlm_compute generate`` with the same prompts (raw
  ``prompt`` text that tokenizes to the same 128 ids), ``batch_size`` 256, same sampling. A
  first shard of the same 256 prompts with 4 new tokens warms up; tokens/s is that of the
  measured shard (event arrival times, tokens counted from its output file). compute stops a
  row at EOS (rare with random weights; counted) and runs each batch until its longest row.
* generate / vllm: the same job with ``"engine": {"kind": "vllm"}``, only when ``import vllm``
  works; otherwise a row saying it is not installed.
* dpo-step / baseline: a hand-written DPO step (sigmoid loss, beta 0.1): policy forward +
  backward on chosen + rejected (one concatenated batch), reference forward without grad, bf16
  weights (no fp32 master copy), SDPA, gradient checkpointing, fused AdamW; 16 pairs of
  128 + 256 tokens; 2 warm-up steps, then 10 timed steps.
* dpo-step / compute: ``python -m srlm_compute train`` in dpo mode (TRL's DPOTrainer: fp32
  weights with bf16 autocast, dropout 0.1 as the job default, gradient checkpointing) on a
  generated preference file of the same lengths, 3 warm-up + 10 timed steps; steps/s from the
  arrival times of its per-step progress events, tokens/step from TRL's ``num_tokens``
  (metrics.json).
* with ``--extras`` (default on a GPU): generate-greedy baseline / compute (temperature 0),
  which isolates compute's engine from its per-row sampler.

MFU = 8 * N * tokens/s / peak: 6N for the policy's forward + backward and 2N for the
reference forward per policy token, N = all parameters (the convention of the reference
figures: 1.1B at 31k tokens/s = 27.6% of 989 TFLOPS); recomputation and attention are not
counted (the notes also give the figure with PaLM's attention term). Peak = dense bf16 of the
GPU from a table (H100 SXM 989.4, PCIe 756, NVL 835.5, H200 989.4, ...); other GPUs get no MFU.

Results: ``$OUT/gpu-check.json`` and ``$OUT/gpu-check.md`` (rewritten after every row, so a kill
keeps what was measured), the table printed on stdout at the end, and the tail of every
measurement's log under ``$OUT/logs/``. Nothing is installed or downloaded. Exit code 0 once
the report is written, whatever the rows say.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPUTE = HERE.parent
ROOT = COMPUTE.parent
PREPARED_TOKENIZER = HERE / ".gpu-tokenizer"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
)
SMOLLM2 = "smollm2-135m-instruct"

# SmolLM2's ChatML turns without its default system prompt (see the module docstring)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SHAPES = {
    "1.1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
}
SMOKE_SHAPES = {  # same vocabularies, tiny bodies
    "1.1b": dict(SHAPES["1.1b"], hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1),
    "135m": dict(SHAPES["135m"], hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
}

# dense bf16 peak TFLOPS; first matching substring of the GPU name wins
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0, "H100 PCIe"),
    ("H100 NVL", 835.5, "H100 NVL"),
    ("H200 NVL", 835.5, "H200 NVL"),
    ("GH200", 989.4, "GH200"),
    ("H200", 989.4, "H200 SXM"),
    ("H100", 989.4, "H100 SXM"),
    ("H800", 989.4, "H800 SXM"),
    ("A100", 312.0, "A100"),
)

ENGINES = {
    ("generate", "baseline"): "transformers generate (plain)",
    ("generate", "compute"): "srlm_compute generate (local)",
    ("generate", "vllm"): "srlm_compute generate (vllm)",
    ("dpo-step", "baseline"): "torch DPO step (plain)",
    ("dpo-step", "compute"): "srlm_compute train (dpo, TRL)",
}
REFERENCE = {  # H100, plain PyTorch + transformers (bf16, SDPA), from the issue
    ("generate", "1.1b"): "H100 reference: ~3.5k tokens/s",
    ("dpo-step", "1.1b"): "H100 reference: ~31k tokens/s, 27.6% MFU",
    ("dpo-step", "135m"): "H100 reference: 11.7% MFU",
}
GEN_TARGET = 5.0  # compute's generation >= 5x the plain baseline of the same run
DPO_MFU_TARGET = 0.40  # on the 1.1b shape

FULL = dict(
    device="cuda",
    shapes=["1.1b", "135m"],
    gen_batch=256,
    prompt_tokens=128,
    new_tokens=256,
    dpo_pairs=16,
    dpo_prompt=128,
    dpo_response=256,
    dpo_warmup=2,
    dpo_steps=10,
    trainer_warmup=3,
    trainer_steps=10,
    budget_s=450.0,
    extras=True,
)
SMOKE = dict(
    device="cpu",
    shapes=["1.1b"],
    gen_batch=4,
    prompt_tokens=16,
    new_tokens=8,
    dpo_pairs=2,
    dpo_prompt=16,
    dpo_response=16,
    dpo_warmup=1,
    dpo_steps=2,
    trainer_warmup=1,
    trainer_steps=2,
    budget_s=240.0,
    extras=False,
)
# per measurement: (hard timeout cap, least time worth starting it with) in seconds; smoke: budget only
LIMITS = {
    "facts": (150, 20),
    "build": (180, 60),
    "gen-base": (180, 45),
    "gen-compute": (240, 60),
    "gen-vllm": (300, 120),
    "dpo-base": (150, 30),
    "dpo-compute": (240, 60),
}
RESERVE_S = 20.0  # kept back from the budget: killing a child (SIGTERM grace) and writing the report
TERM_GRACE_S = 10.0


# =========================================================================== shared helpers


def peak_for(gpu_name: str | None) -> tuple[float | None, str | None]:
    """(dense bf16 peak TFLOPS, table label) for a GPU name; (None, None) when not in the table."""
    for needle, tflops, label in PEAK_BF16_TFLOPS:
        if gpu_name and needle.lower() in gpu_name.lower():
            return tflops, label
    return None, None


def dpo_flops_per_token(params: int, layers: int, hidden: int, seq: int) -> tuple[float, float]:
    """(8N, 8N + PaLM attention term) FLOPs per policy token of a DPO step (policy fwd+bwd, reference fwd)."""
    dense = 8.0 * params
    attention = 12.0 * layers * hidden * seq + 4.0 * layers * hidden * seq
    return dense, dense + attention


def find_tokenizer(explicit: str | None, prepared: bool) -> str | None:
    """The first directory holding SmolLM2's tokenizer.json (see the module docstring for the order)."""
    cands = [
        explicit,
        os.environ.get("SRLM_BENCH_TOKENIZER"),
        str(PREPARED_TOKENIZER) if prepared else None,
        os.environ.get("SRLM_TEST_MODEL_DIR"),
        str(COMPUTE / ".pytest_cache" / "v" / "cache" / "srlm-models" / SMOLLM2),
        str(Path.home() / ".cache" / "srlm" / "models" / SMOLLM2),
    ]
    return next((c for c in cands if c and (Path(c) / "tokenizer.json").is_file()), None)


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1000:.2f}k" if x >= 1000 else f"{x:.1f}"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def tail(path: Path, lines: int = 4, chars: int = 400) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-chars:]


# =========================================================================== workers (one process each)


def _torch_dtype(torch, device: str):
    return torch.bfloat16 if device == "cuda" else torch.float32


def _load_lm(path: str, device: str, torch):
    from transformers import AutoModelForCausalLM

    dtype = _torch_dtype(torch, device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    return model.to(device=device, dtype=dtype)


def _sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gib(torch, device: str) -> str:
    return f"; peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""


def worker_facts(spec: dict) -> dict:
    import importlib.metadata as md
    import importlib.util
    import platform

    facts: dict = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "cpus": os.cpu_count(),
        "versions": {},
        "importable": {},
    }
    for name in ("torch", "transformers", "trl", "accelerate", "datasets", "tokenizers", "vllm"):
        try:
            facts["versions"][name] = md.version(name)
        except md.PackageNotFoundError:
            facts["versions"][name] = None
    for name in ("torch", "transformers", "trl", "vllm"):
        if importlib.util.find_spec(name) is None:
            facts["importable"][name] = "not installed"
            continue
        try:
            __import__(name)
            facts["importable"][name] = True
        except Exception as exc:  # noqa: BLE001 - any import failure is a fact to report
            facts["importable"][name] = f"import failed: {type(exc).__name__}: {exc}"[:300]
    if facts["importable"].get("torch") is True:
        import torch

        facts["cuda_available"] = torch.cuda.is_available()
        facts["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpu_count"] = torch.cuda.device_count()
            facts["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
            facts["capability"] = f"{props.major}.{props.minor}"
            facts["bf16"] = torch.cuda.is_bf16_supported()
            facts["flash_sdp"] = torch.backends.cuda.flash_sdp_enabled()
    return facts


def _synth_tokenizer(vocab_size: int):
    """A word-level tokenizer (specials + alphabetic words), used only when no SmolLM2 tokenizer exists."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["system", "user", "assistant"]
    i = 0
    while len(specials) + len(words) < vocab_size:
        w, n = "", i
        for _ in range(4):
            w, n = letters[n % 26] + w, n // 26
        words.append(w)
        i += 1
    vocab = {tok: idx for idx, tok in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>"
    )
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    return tok


def _load_tokenizer(source: str | None, vocab_size: int):
    """(tokenizer, how it was obtained): AutoTokenizer, else the raw tokenizer.json, else synthesised."""
    if source:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(source), f"tokenizer from {source}"
        except Exception as exc:  # noqa: BLE001 - e.g. a tokenizer_class this transformers does not know
            tj = Path(source) / "tokenizer.json"
            if not tj.is_file():
                raise
            from transformers import PreTrainedTokenizerFast

            cfg = {}
            if (Path(source) / "tokenizer_config.json").is_file():
                cfg = json.loads((Path(source) / "tokenizer_config.json").read_text())
            specials = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if isinstance(cfg.get(k), str)}
            tok = PreTrainedTokenizerFast(tokenizer_file=str(tj), **specials)
            return tok, f"tokenizer.json from {source} (AutoTokenizer failed: {type(exc).__name__})"
    return _synth_tokenizer(vocab_size), "synthesised word-level tokenizer (no SmolLM2 tokenizer found)"


def _safe_words(tok, vocab_size: int, want: int = 1500) -> list[str]:
    """Words (with a leading space) that are exactly one token each, with ids below ``vocab_size``."""
    words: list[str] = []
    for idx in range(min(vocab_size, len(tok))):
        text = tok.decode([idx])
        word = text.strip()
        if len(word) < 3 or not (word.isascii() and word.isalpha() and word.islower()):
            continue
        piece = " " + word
        if tok(piece, add_special_tokens=False)["input_ids"] == [idx]:
            words.append(piece)
            if len(words) >= want:
                break
    if len(words) < 50:
        raise RuntimeError(f"the tokenizer has only {len(words)} single-token words below id {vocab_size}")
    return words


def _fit(count, target: int) -> int:
    """Number of words k with count(k) == target (count is linear in k, one token per word)."""
    k = max(1, target - (count(1) - 1))
    for _ in range(6):
        n = count(k)
        if n == target:
            return k
        k = max(1, k + target - n)
    raise RuntimeError(f"cannot fit {target} tokens (got {count(k)} with {k} words)")


def worker_build(spec: dict) -> dict:
    """Random-init model dir + the prompts / preference data of this shape (all ids below the vocab)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from srlm_compute.tiny_model import save_model_dir, special_token_ids

    shape, device, out = spec["shape_cfg"], spec["device"], Path(spec["dir"])
    vocab = shape["vocab_size"]
    t0 = time.monotonic()
    tok, tok_note = _load_tokenizer(spec.get("tokenizer"), vocab)
    tok.chat_template = CHATML
    bos, eos, pad = special_token_ids(tok, spec.get("tokenizer") or "synthesised tokenizer")
    if max(i for i in (bos, eos, pad) if i is not None) >= vocab:
        raise RuntimeError(f"special token ids {bos, eos, pad} do not fit vocab {vocab}")
    config = LlamaConfig(
        **shape,
        head_dim=shape["hidden_size"] // shape["num_attention_heads"],
        max_position_embeddings=2048,
        attention_dropout=0.0,
        rms_norm_eps=1e-5,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        use_cache=True,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model = model.to(_torch_dtype(torch, device))
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    params = sum(p.numel() for p in model.parameters())
    t_init = time.monotonic() - t0
    save_model_dir(model, tok, str(out))
    del model
    t_save = time.monotonic() - t0 - t_init

    # data: every example has exactly the configured token counts
    words = _safe_words(tok, vocab)
    rng = random.Random(0)

    def text(k: int) -> str:
        return "".join(rng.choice(words) for _ in range(k))

    def ids(s: str) -> list[int]:
        return tok(s, add_special_tokens=True)["input_ids"]

    def chat_ids(user: str, reply: str | None) -> list[int]:
        msgs = [{"role": "user", "content": user}] + ([{"role": "assistant", "content": reply}] if reply else [])
        rendered = tok.apply_chat_template(msgs, add_generation_prompt=reply is None, tokenize=False)
        return tok(rendered, add_special_tokens=False)["input_ids"]

    k_gen = _fit(lambda k: len(ids(text(k))), spec["prompt_tokens"])
    prompts = [text(k_gen) for _ in range(spec["gen_batch"])]
    prompt_ids = [ids(p) for p in prompts]
    if {len(p) for p in prompt_ids} != {spec["prompt_tokens"]}:
        raise RuntimeError(f"prompt lengths {sorted({len(p) for p in prompt_ids})} != {spec['prompt_tokens']}")

    k_prompt = _fit(lambda k: len(chat_ids(text(k), None)), spec["dpo_prompt"])
    probe = text(k_prompt)
    base = len(chat_ids(probe, None))
    k_reply = _fit(lambda k: len(chat_ids(probe, text(k))) - base, spec["dpo_response"])
    rows, lengths, top = [], set(), 0
    for i in range(spec["dpo_examples"]):
        p, c, r = text(k_prompt), text(k_reply), text(k_reply)
        full_c, full_r = chat_ids(p, c), chat_ids(p, r)
        lengths.add((len(chat_ids(p, None)), len(full_c), len(full_r)))
        top = max(top, max(full_c), max(full_r))
        rows.append({"id": f"p{i}", "prompt": p, "chosen": c, "rejected": r})
    if top >= vocab:
        raise RuntimeError(f"preference data has token id {top} >= vocab {vocab}")
    Path(spec["gen_prompts"]).write_text(json.dumps({"texts": prompts, "ids": prompt_ids}))
    Path(spec["dpo_data"]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    p_len, c_len, r_len = max(lengths)
    return {
        "params": params,
        "tokenizer": tok_note,
        "init_s": round(t_init, 1),
        "save_s": round(t_save, 1),
        "dpo_prompt_tokens": p_len,
        "dpo_chosen_tokens": c_len,
        "dpo_rejected_tokens": r_len,
    }


def worker_gen_base(spec: dict) -> dict:
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    device, greedy = spec["device"], spec["greedy"]
    t0 = time.monotonic()
    model = _load_lm(spec["model"], device, torch).eval()
    load_s = time.monotonic() - t0
    ids = torch.tensor(json.loads(Path(spec["gen_prompts"]).read_text())["ids"], dtype=torch.long, device=device)
    batch, width = ids.shape
    new = spec["new_tokens"]
    eos = model.generation_config.eos_token_id
    pad = model.generation_config.pad_token_id if model.generation_config.pad_token_id is not None else eos
    sample = {} if greedy else dict(temperature=1.0, top_p=1.0, top_k=0)
    soft_end = spec["t_start"] + spec["soft_s"]

    class Deadline(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), time.monotonic() > soft_end, dtype=torch.bool, device=input_ids.device)

    def run(n: int):
        cfg = GenerationConfig(
            do_sample=not greedy, max_new_tokens=n, min_new_tokens=n, eos_token_id=eos, pad_token_id=pad, use_cache=True, **sample
        )
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                generation_config=cfg,
                stopping_criteria=StoppingCriteriaList([Deadline()]),
            )

    run(min(8, new))  # warm-up: kernels, allocator, cuBLAS
    _sync(torch, device)
    t1 = time.monotonic()
    out = run(new)
    _sync(torch, device)
    seconds = time.monotonic() - t1
    made = out.shape[1] - width
    tokens = batch * made
    return {
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": tokens / seconds,
        "batch": batch,
        "new_tokens": made,
        "truncated": made < new,
        "load_s": round(load_s, 1),
        "peak_gib": _peak_gib(torch, device),
    }


def worker_dpo_base(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F

    device, beta = spec["device"], 0.1
    t0 = time.monotonic()
    policy = _load_lm(spec["model"], device, torch)
    policy.config.use_cache = False
    policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.train()
    ref = _load_lm(spec["model"], device, torch).eval()
    ref.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, fused=device == "cuda")
    load_s = time.monotonic() - t0
    pairs, plen, rlen = spec["dpo_pairs"], spec["dpo_prompt"], spec["dpo_response"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    seqs = torch.randint(3, policy.config.vocab_size, (2 * pairs, plen + rlen), generator=gen).to(device)
    seqs[pairs:, :plen] = seqs[:pairs, :plen]  # chosen and rejected share the prompt

    def logps(model, x):
        logits = model(input_ids=x, use_cache=False).logits[:, plen - 1 : -1]
        return torch.log_softmax(logits.float(), dim=-1).gather(-1, x[:, plen:, None]).squeeze(-1).sum(-1)

    def step() -> float:
        with torch.no_grad():
            ref_c, ref_r = logps(ref, seqs).chunk(2)
        pol_c, pol_r = logps(policy, seqs).chunk(2)
        loss = -F.logsigmoid(beta * ((pol_c - ref_c) - (pol_r - ref_r))).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(spec["warmup"]):
        step()
    _sync(torch, device)
    soft_end = spec["t_start"] + spec["soft_s"]
    t1 = time.monotonic()
    done = 0
    while done < spec["steps"] and (done == 0 or time.monotonic() < soft_end):
        loss = step()
        done += 1
    _sync(torch, device)
    seconds = time.monotonic() - t1
    tokens_per_step = 2 * pairs * (plen + rlen)
    return {
        "steps": done,
        "seconds": round(seconds, 3),
        "seconds_per_step": seconds / done,
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step * done / seconds,
        "loss": float(loss),
        "load_s": round(load_s, 1),
        "peak_gib": _peak_gib(torch, device),
    }


WORKERS = {"facts": worker_facts, "build": worker_build, "gen-base": worker_gen_base, "dpo-base": worker_dpo_base}


def worker_main(kind: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    spec["t_start"] = time.monotonic()
    sys.path.insert(0, str(COMPUTE))
    from srlm_compute.runtime import apply_env_defaults, quiet_libraries

    apply_env_defaults()
    quiet_libraries(datasets=False)
    try:
        result = {"ok": True, **WORKERS[kind](spec)}
    except BaseException as exc:  # noqa: BLE001 - reported to the orchestrator as an error row
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]}
    Path(spec["result"]).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


# =========================================================================== orchestrator


class Proc:
    """A child process in its own session, killed (group, TERM then KILL) at its deadline."""

    live: "set[Proc]" = set()

    def __init__(self, args: list[str], env: dict, log: Path, events: bool, timeout: float):
        self.t0 = time.monotonic()
        self.timeout = timeout
        self.events: list[tuple[float, dict]] = []
        self.timed_out = False
        self.log = log
        self._fh = open(log, "ab")
        self.p = subprocess.Popen(
            args, stdout=subprocess.PIPE if events else self._fh, stderr=self._fh, env=env, cwd=str(ROOT), start_new_session=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True) if events else None
        if self._reader:
            self._reader.start()
        Proc.live.add(self)

    def _read(self) -> None:
        for raw in self.p.stdout:
            now = time.monotonic() - self.t0
            self._fh.write(b"[event] " + raw)
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                self.events.append((now, obj))

    def kill(self) -> None:
        for sig, wait in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.p.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def wait(self) -> int | None:
        try:
            rc = self.p.wait(max(0.1, self.t0 + self.timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.kill()
            rc = None
        if self._reader:
            self._reader.join(5)
        self._fh.close()
        Proc.live.discard(self)
        self.wall_s = time.monotonic() - self.t0
        return rc

    def of(self, name: str) -> list[tuple[float, dict]]:
        return [(t, e) for t, e in self.events if e.get("event") == name]


class Check:
    def __init__(self, args: argparse.Namespace, cfg: dict):
        self.args, self.cfg = args, cfg
        self.t0 = time.monotonic()
        self.deadline = self.t0 + cfg["budget_s"]
        self.out = Path(args.out)
        self.work = Path(args.work)
        self.logs = self.work / "logs"
        for d in (self.out, self.work, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(COMPUTE) + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        sys.path.insert(0, str(COMPUTE))
        from srlm_compute.runtime import ENV_DEFAULTS

        for k, v in ENV_DEFAULTS.items():
            self.env.setdefault(k, v)
        self.rows: list[dict] = []
        self.facts: dict = {}
        self.models: dict = {}
        self.notes: list[str] = []
        self.peak: float | None = None
        self.peak_label: str | None = None

    # ------------------------------------------------------------------ time
    def remaining(self) -> float:
        return self.deadline - time.monotonic() - RESERVE_S

    def slot(self, kind: str) -> float | None:
        """Hard timeout for the next measurement of ``kind``; None when it no longer fits the budget."""
        cap, least = LIMITS[kind]
        left = self.remaining()
        if self.args.smoke:
            return left if left > 5 else None
        return min(cap, left) if left >= least else None

    # ------------------------------------------------------------------ rows and reports
    def row(self, measurement: str, shape: str, engine_id: str, engine: str, status: str = "ok", **kw) -> dict:
        row = {
            "measurement": measurement,
            "shape": self.label(shape),
            "engine_id": engine_id,
            "engine": engine,
            "status": status,
            "tokens_per_s": None,
            "mfu": None,
            "ratio": None,
            "target": None,
            "met": None,
            "notes": "",
            "details": {},
        }
        row.update(kw)
        self.rows.append(row)
        self.write()
        print(
            f"[gpu-check {time.monotonic() - self.t0:6.1f}s] {measurement} {shape} {engine_id}: {status} "
            f"tokens/s={fmt_rate(row['tokens_per_s'])} mfu={fmt_pct(row['mfu'])} {row['notes'][:200]}",
            flush=True,
        )
        return row

    def begin(self, kind: str, measurement: str, shape: str, engine_id: str) -> tuple[str, float | None]:
        """(engine name, hard timeout) of a measurement; the timeout is None (a "skipped" row) when out of time."""
        engine = ENGINES[measurement.replace("-greedy", ""), engine_id]
        slot = self.slot(kind)
        if slot is None:
            self.row(measurement, shape, engine_id, engine, status="skipped", notes="time budget spent")
        return engine, slot

    def failed(self, measurement: str, shape: str, engine_id: str, engine: str, why: str, log: Path | None) -> dict:
        rel = f" (log: logs/{log.name})" if log else ""
        return self.row(measurement, shape, engine_id, engine, status="error", notes=f"{why}{rel}")

    def label(self, shape: str) -> str:
        return f"{shape}-smoke" if self.args.smoke else shape

    def reference(self, measurement: str, shape: str) -> str:
        ref = None if self.args.smoke else REFERENCE.get((measurement, shape))
        return f"; {ref}" if ref else ""

    def baseline_rate(self, measurement: str, shape: str) -> float | None:
        for r in self.rows:
            if (r["measurement"], r["shape"], r["engine_id"]) == (measurement, self.label(shape), "baseline"):
                return r["tokens_per_s"]
        return None

    def report(self) -> dict:
        return {
            "machine": self.facts,
            "peak_bf16_tflops": self.peak,
            "peak_label": self.peak_label,
            "settings": {k: v for k, v in self.cfg.items()},
            "smoke": self.args.smoke,
            "models": self.models,
            "rows": self.rows,
            "notes": self.notes,
            "elapsed_s": round(time.monotonic() - self.t0, 1),
        }

    def markdown(self) -> str:
        f, c = self.facts, self.cfg
        v = f.get("versions", {})
        imp = f.get("importable", {})
        vllm = v.get("vllm") if imp.get("vllm") is True else (imp.get("vllm") or "unknown")
        gpu = f.get("gpu") or ("no CUDA device" if f else "unknown")
        peak = f"{self.peak} TFLOPS bf16 dense ({self.peak_label})" if self.peak else "not in the table: no MFU"
        lines = [
            "# srlm compute GPU check" + (" (smoke: CPU, tiny shapes)" if self.args.smoke else ""),
            "",
            f"- GPU: {gpu}; peak {peak}; memory {f.get('gpu_memory_gib', '-')} GiB; CUDA (torch) "
            f"{f.get('torch_cuda', '-')}; {f.get('cpus', '-')} CPUs; python {f.get('python', '-')}",
            f"- torch {v.get('torch')}, transformers {v.get('transformers')}, trl {v.get('trl')}, "
            f"accelerate {v.get('accelerate')}, datasets {v.get('datasets')}; vllm: {vllm}",
            f"- generate: batch {c['gen_batch']}, {c['prompt_tokens']} prompt + {c['new_tokens']} new tokens, "
            "sampling (T=1, top_p=1); DPO: "
            f"{c['dpo_pairs']} pairs x ({c['dpo_prompt']} + {c['dpo_response']}) tokens, beta 0.1, "
            "gradient checkpointing",
            *[f"- model {k}: {m['params']:,} parameters, {m['tokenizer']}" for k, m in self.models.items() if "params" in m],
            f"- elapsed {time.monotonic() - self.t0:.0f} s of a {c['budget_s']:.0f} s budget",
            "",
            "| measurement | shape | engine | tokens/s | MFU | ratio vs baseline | target | met? | notes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            notes = (r["status"] + ": " if r["status"] in ("error", "skipped") else "") + r["notes"]
            lines.append(
                f"| {r['measurement']} | {r['shape']} | {r['engine']} | {fmt_rate(r['tokens_per_s'])} | "
                f"{fmt_pct(r['mfu'])} | {ratio} | {r['target'] or '-'} | {met} | {notes.replace('|', '/')} |"
            )
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        (self.out / "gpu-check.json").write_text(json.dumps(self.report(), indent=2) + "\n")
        (self.out / "gpu-check.md").write_text(self.markdown())

    def copy_logs(self) -> None:
        dest = self.out / "logs"
        dest.mkdir(exist_ok=True)
        for log in sorted(self.logs.glob("*.log")):
            data = log.read_bytes()
            (dest / log.name).write_bytes(data[-65536:])

    # ------------------------------------------------------------------ processes
    def start_worker(self, kind: str, tag: str, spec: dict, timeout: float) -> tuple[Proc, Path]:
        result_path = self.work / f"{tag}.result.json"
        result_path.unlink(missing_ok=True)
        spec = dict(spec, result=str(result_path), soft_s=max(0.5 * timeout, timeout - 25.0))
        spec_path = self.work / f"{tag}.spec.json"
        spec_path.write_text(json.dumps(spec))
        args = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--spec", str(spec_path)]
        return Proc(args, self.env, self.logs / f"{tag}.log", events=False, timeout=timeout), result_path

    @staticmethod
    def finish_worker(proc: Proc, result_path: Path) -> tuple[dict | None, str, Path]:
        """Wait for a worker; (result, error message, log path)."""
        rc = proc.wait()
        if proc.timed_out:
            return None, f"timed out after {proc.timeout:.0f} s (killed)", proc.log
        if not result_path.is_file():
            return None, f"exit {rc} without a result: {tail(proc.log)}", proc.log
        result = json.loads(result_path.read_text())
        if not result.get("ok"):
            return None, result.get("error", "failed"), proc.log
        return result, "", proc.log

    def worker(self, kind: str, tag: str, spec: dict, timeout: float) -> tuple[dict | None, str, Path]:
        return self.finish_worker(*self.start_worker(kind, tag, spec, timeout))

    def cli(self, tag: str, command: str, job: dict, timeout: float) -> Proc:
        job_path = self.work / f"{tag}.job.json"
        job_path.write_text(json.dumps(job))
        proc = Proc(
            [sys.executable, "-m", "srlm_compute", command, "--job", str(job_path)],
            self.env,
            self.logs / f"{tag}.log",
            events=True,
            timeout=timeout,
        )
        proc.wait()
        return proc

    # ------------------------------------------------------------------ steps
    def finish_facts(self, started: tuple[Proc, Path]) -> None:
        res, err, _ = self.finish_worker(*started)
        self.facts = res or {"error": err}
        self.facts.pop("ok", None)
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=15,
            )
            if smi.returncode == 0:
                self.facts["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.peak, self.peak_label = peak_for(self.facts.get("gpu"))
        if self.cfg["device"] == "cuda" and not self.facts.get("cuda_available"):
            self.notes.append("CUDA is not available to torch here: the measurements below will fail")
        self.write()

    def tokenizer_source(self) -> str | None:
        return None if self.args.tokenizer == "synth" else find_tokenizer(self.args.tokenizer, prepared=True)

    def build(self, shape: str) -> dict | None:
        slot = self.slot("build")
        if slot is None:
            self.notes.append(f"{shape}: model not built (time budget spent)")
            return None
        n_ex = self.cfg["dpo_pairs"] * (self.cfg["trainer_warmup"] + self.cfg["trainer_steps"])
        spec = dict(
            self.cfg,
            shape_cfg=self.shapes[shape],
            dir=str(self.work / "models" / shape),
            tokenizer=self.tok_source,
            gen_prompts=str(self.work / f"gen-prompts-{shape}.json"),
            dpo_data=str(self.work / f"dpo-{shape}.jsonl"),
            dpo_examples=n_ex,
        )
        (self.work / "models").mkdir(exist_ok=True)
        res, err, log = self.worker("build", f"build-{shape}", spec, slot)
        if res is None:
            self.notes.append(f"{shape}: model build failed: {err} (log: logs/{log.name})")
            self.models[shape] = {"error": err}
            self.write()
            return None
        info = {**spec, **res, "shape": self.shapes[shape]}
        info.pop("ok", None)
        info.pop("shape_cfg", None)
        self.models[shape] = {
            k: info[k]
            for k in ("params", "tokenizer", "init_s", "save_s", "shape", "dpo_prompt_tokens", "dpo_chosen_tokens", "dpo_rejected_tokens")
        }
        self.write()
        return info

    def gen_requests(self, m: dict, tag: str, temperature: float) -> list[dict]:
        """Shard files: a warm-up shard (4 new tokens) and the measured shard, same prompts."""
        texts = json.loads(Path(m["gen_prompts"]).read_text())["texts"]
        shards = []
        for name, new in (("warm", min(4, self.cfg["new_tokens"])), ("measure", self.cfg["new_tokens"])):
            inp = self.work / f"{tag}-{name}.jsonl"
            out = self.work / f"{tag}-{name}.out.jsonl"
            for stale in (out, Path(str(out) + ".lock")):
                stale.unlink(missing_ok=True)
            inp.write_text(
                "".join(
                    json.dumps(
                        {
                            "id": f"{name[0]}{i}",
                            "prompt": t,
                            "n": 1,
                            "temperature": temperature,
                            "top_p": 1.0,
                            "max_new_tokens": new,
                            "seed": i,
                        }
                    )
                    + "\n"
                    for i, t in enumerate(texts)
                )
            )
            shards.append({"input": str(inp), "output": str(out)})
        return shards

    def gen_base(self, shape: str, m: dict, measurement: str, greedy: bool) -> None:
        engine, slot = self.begin("gen-base", measurement, shape, "baseline")
        if slot is None:
            return
        res, err, log = self.worker("gen-base", f"{measurement}-base-{shape}", dict(m, model=m["dir"], greedy=greedy), slot)
        if res is None:
            self.failed(measurement, shape, "baseline", engine, err, log)
            return
        notes = (
            f"{res['batch']} x {res['new_tokens']} new tokens in {res['seconds']:.1f} s (EOS suppressed); "
            f"load {res['load_s']} s{res['peak_gib']}"
        )
        if res["truncated"]:
            notes += "; STOPPED EARLY at the time guard"
        self.row(
            measurement,
            shape,
            "baseline",
            engine,
            tokens_per_s=res["tokens_per_s"],
            ratio=1.0,
            notes=notes + self.reference(measurement, shape),
            details=res,
        )

    def gen_engine(self, shape: str, m: dict, measurement: str, engine_id: str, greedy: bool) -> None:
        if engine_id == "vllm" and self.facts.get("importable", {}).get("vllm") is not True:
            why = self.facts.get("importable", {}).get("vllm") or "not checked (facts failed)"
            status = "not installed" if why == "not installed" else "error"
            notes = "vllm not installed on this machine" if why == "not installed" else f"vllm: {why}"
            self.row(measurement, shape, engine_id, ENGINES["generate", engine_id], status=status, notes=notes + "; nothing measured")
            return
        engine, slot = self.begin("gen-vllm" if engine_id == "vllm" else "gen-compute", measurement, shape, engine_id)
        if slot is None:
            return
        tag = f"{measurement}-{engine_id}-{shape}"
        batch = self.cfg["gen_batch"]
        job = {
            "model": m["dir"],
            "shards": self.gen_requests(m, tag, 0.0 if greedy else 1.0),
            "device": self.cfg["device"],
            "batch_size": batch,
            "threads": 0,
        }
        if engine_id == "vllm":
            job["engine"] = {
                "kind": "vllm",
                "gpu_memory_utilization": 0.85,
                "max_model_len": self.cfg["prompt_tokens"] + self.cfg["new_tokens"] + 16,
                "requests_per_call": batch,
            }
        proc = self.cli(tag, "generate", job, slot)
        done = proc.of("done")
        shard_ends = {e.get("shard"): t for t, e in proc.of("shard_done")}
        out = Path(job["shards"][1]["output"])
        outputs = [
            o for line in (out.read_text().splitlines() if out.is_file() else []) if line.strip() for o in json.loads(line)["outputs"]
        ]
        if not done or 0 not in shard_ends or 1 not in shard_ends or not outputs:
            err = proc.of("error")
            why = (
                f"timed out after {slot:.0f} s (killed)"
                if proc.timed_out
                else err[-1][1].get("message", "failed")[:400]
                if err
                else f"no done event: {tail(proc.log)}"
            )
            self.failed(measurement, shape, engine_id, engine, why, proc.log)
            return
        tokens = sum(o["tokens"] for o in outputs)
        stopped = sum(1 for o in outputs if o["finish_reason"] == "stop")
        seconds = shard_ends[1] - shard_ends[0]
        rate = tokens / seconds
        d = done[-1][1]
        base = self.baseline_rate(measurement, shape)
        ratio = rate / base if base else None
        target = f">= {GEN_TARGET:g}x baseline" if measurement == "generate" else None
        met = (ratio >= GEN_TARGET) if (target and ratio is not None) else None
        notes = (
            f"measured shard: {tokens} tokens in {seconds:.1f} s after a warm-up shard; {stopped}/{len(outputs)} "
            f"rows stopped at EOS; done event {fmt_rate(d.get('tokens_per_s'))} tok/s over both shards; "
            f"wall incl. load {proc.wall_s:.1f} s"
        )
        self.row(
            measurement,
            shape,
            engine_id,
            engine,
            tokens_per_s=rate,
            ratio=ratio,
            target=target,
            met=met,
            notes=notes,
            details={
                "tokens": tokens,
                "seconds": round(seconds, 3),
                "stopped_at_eos": stopped,
                "rows": len(outputs),
                "done": d,
                "wall_s": round(proc.wall_s, 1),
            },
        )

    def mfu(self, rate: float, m: dict) -> tuple[float | None, float | None]:
        if not self.peak or self.cfg["device"] != "cuda":
            return None, None
        shape = m["shape"]
        seq = self.cfg["dpo_prompt"] + self.cfg["dpo_response"]
        dense, with_attn = dpo_flops_per_token(m["params"], shape["num_hidden_layers"], shape["hidden_size"], seq)
        peak = self.peak * 1e12
        return dense * rate / peak, with_attn * rate / peak

    def dpo_base(self, shape: str, m: dict) -> None:
        engine, slot = self.begin("dpo-base", "dpo-step", shape, "baseline")
        if slot is None:
            return
        res, err, log = self.worker(
            "dpo-base", f"dpo-base-{shape}", dict(m, model=m["dir"], warmup=self.cfg["dpo_warmup"], steps=self.cfg["dpo_steps"]), slot
        )
        if res is None:
            self.failed("dpo-step", shape, "baseline", engine, err, log)
            return
        mfu, mfu_attn = self.mfu(res["tokens_per_s"], m)
        dtype = "bf16" if self.cfg["device"] == "cuda" else "fp32"
        notes = (
            f"{res['steps']} steps x {res['tokens_per_step']} tokens, {res['seconds_per_step']:.3f} s/step; "
            f"{dtype} weights, AdamW; load {res['load_s']} s{res['peak_gib']}"
        )
        if mfu_attn is not None:
            notes += f"; MFU incl. attention {fmt_pct(mfu_attn)}"
        self.row(
            "dpo-step",
            shape,
            "baseline",
            engine,
            tokens_per_s=res["tokens_per_s"],
            mfu=mfu,
            ratio=1.0,
            notes=notes + self.reference("dpo-step", shape),
            details=res,
        )

    def dpo_engine(self, shape: str, m: dict) -> None:
        engine, slot = self.begin("dpo-compute", "dpo-step", shape, "compute")
        if slot is None:
            return
        warm, steps = self.cfg["trainer_warmup"], self.cfg["trainer_steps"]
        output = self.work / f"dpo-out-{shape}"
        job = {
            "mode": "dpo",
            "model": m["dir"],
            "data": m["dpo_data"],
            "output": str(output),
            "max_length": self.cfg["dpo_prompt"] + self.cfg["dpo_response"] + 64,
            "batch_size": self.cfg["dpo_pairs"],
            "grad_accum": 1,
            "max_steps": warm + steps,
            "device": self.cfg["device"],
            "overwrite": True,
            "gradient_checkpointing": True,
        }
        proc = self.cli(f"dpo-compute-{shape}", "train", job, slot)
        marks = [(t, e["step"]) for t, e in proc.of("progress") if isinstance(e.get("step"), int)]
        metrics = {}
        if (output / "metrics.json").is_file():
            metrics = json.loads((output / "metrics.json").read_text())
        shutil.rmtree(output, ignore_errors=True)
        start = [(t, s) for t, s in marks if s >= max(warm, 1)]
        if len(start) < 2:
            err = proc.of("error")
            why = (
                f"timed out after {slot:.0f} s (killed)"
                if proc.timed_out
                else err[-1][1].get("message", "failed")[:400]
                if err
                else f"too few steps: {tail(proc.log)}"
            )
            self.failed("dpo-step", shape, "compute", engine, f"{why}; {len(marks)} progress events", proc.log)
            return
        (t_a, s_a), (t_b, s_b) = start[0], start[-1]
        sec_per_step = (t_b - t_a) / (s_b - s_a)
        expected = self.cfg["dpo_pairs"] * (
            2 * m["dpo_prompt_tokens"]
            + (m["dpo_chosen_tokens"] - m["dpo_prompt_tokens"])
            + (m["dpo_rejected_tokens"] - m["dpo_prompt_tokens"])
        )
        tokens_per_step = metrics.get("tokens_per_step") or expected
        rate = tokens_per_step / sec_per_step
        mfu, mfu_attn = self.mfu(rate, m)
        base = self.baseline_rate("dpo-step", shape)
        target = f">= {100 * DPO_MFU_TARGET:.0f}% MFU" if shape == "1.1b" and not self.args.smoke else None
        met = (mfu >= DPO_MFU_TARGET) if (target and mfu is not None) else None
        notes = (
            f"{s_b - s_a} timed steps after {s_a} (event arrival), {sec_per_step:.3f} s/step, "
            f"{tokens_per_step:.0f} tokens/step ({'TRL num_tokens' if metrics.get('tokens_per_step') else 'counted'}"
            f"; data: {expected}); fp32 weights{' + bf16 autocast' if self.cfg['device'] == 'cuda' else ''}, "
            "dropout 0.1; wall incl. load and save "
            f"{proc.wall_s:.1f} s"
        )
        if mfu_attn is not None:
            notes += f"; MFU incl. attention {fmt_pct(mfu_attn)}"
        if proc.timed_out:
            notes += f"; killed at the {slot:.0f} s guard after these steps"
        self.row(
            "dpo-step",
            shape,
            "compute",
            engine,
            tokens_per_s=rate,
            mfu=mfu,
            ratio=rate / base if base else None,
            target=target,
            met=met,
            notes=notes,
            details={
                "seconds_per_step": sec_per_step,
                "tokens_per_step": tokens_per_step,
                "steps_timed": s_b - s_a,
                "wall_s": round(proc.wall_s, 1),
                "metrics": {
                    k: metrics.get(k) for k in ("steps", "runtime_s", "seconds_per_step", "num_tokens", "tokens_per_step", "peak_rss_mb")
                },
            },
        )

    def run(self) -> None:
        self.shapes = SMOKE_SHAPES if self.args.smoke else SHAPES
        facts = self.start_worker("facts", "facts", {}, self.slot("facts") or 30)  # runs beside the first build
        self.tok_source = self.tokenizer_source()
        self.notes.append(
            "MFU = 8 * N * tokens/s / peak bf16 dense (6N policy fwd+bwd + 2N reference fwd per policy token, "
            "N = all parameters; recompute not counted); 'incl. attention' adds PaLM's 12*L*d*S (+4*L*d*S reference)"
        )
        self.notes.append(
            "generate tokens/s counts generated tokens only (new tokens, not the prompt); ratios "
            "compare with the plain baseline of the same shape in this run"
        )
        self.notes.append(
            "vLLM cannot be installed on the lent machine (no network, 64 MiB carried at most): its "
            "row measures it only where `import vllm` works"
        )
        plan = []
        for shape in self.cfg["shapes"]:
            gens = [("generate", "baseline"), ("generate", "compute"), ("generate", "vllm")]
            dpos = [("dpo-step", "baseline"), ("dpo-step", "compute")]
            plan.append((shape, gens + dpos if shape == "1.1b" else dpos + gens))
        if self.cfg["extras"] and "1.1b" in self.cfg["shapes"]:
            plan.append(("1.1b", [("generate-greedy", "baseline"), ("generate-greedy", "compute")]))
        built: dict[str, dict | None] = {}
        if plan:
            built[plan[0][0]] = self.build(plan[0][0])
        self.finish_facts(facts)
        for shape, steps in plan:
            if shape not in built:
                built[shape] = self.build(shape)
            m = built[shape]
            for measurement, engine_id in steps:
                if m is None:
                    engine = ENGINES[measurement.replace("-greedy", ""), engine_id]
                    self.row(measurement, shape, engine_id, engine, status="skipped", notes="no model (build failed or skipped; see notes)")
                elif measurement.startswith("generate") and engine_id == "baseline":
                    self.gen_base(shape, m, measurement, greedy=measurement == "generate-greedy")
                elif measurement.startswith("generate"):
                    self.gen_engine(shape, m, measurement, engine_id, greedy=measurement == "generate-greedy")
                elif engine_id == "baseline":
                    self.dpo_base(shape, m)
                else:
                    self.dpo_engine(shape, m)
        if self.tok_source is None:
            self.notes.append(
                "tokenizer: a word-level tokenizer was synthesised (no SmolLM2 tokenizer found, or "
                "--tokenizer synth); token ids, not text, drive the measurements"
            )


def prepare(args: argparse.Namespace) -> int:
    """Copy SmolLM2's tokenizer files to compute/bench/.gpu-tokenizer (importing the packaged GGUF if needed)."""
    src = find_tokenizer(args.tokenizer, prepared=False)
    if src is None:
        tmp = Path(args.work) / "import"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        job = tmp.parent / "import.job.json"
        job.write_text(json.dumps({"packaged": SMOLLM2, "output": str(tmp), "overwrite": True}))
        env = dict(os.environ, PYTHONPATH=str(COMPUTE))
        rc = subprocess.run([sys.executable, "-m", "srlm_compute", "import-model", "--job", str(job)], env=env).returncode
        if rc != 0:
            print(f"cannot import {SMOLLM2} (exit {rc}); pass --tokenizer DIR", file=sys.stderr)
            return 1
        src = str(tmp)
    PREPARED_TOKENIZER.mkdir(exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, PREPARED_TOKENIZER / name)
            copied.append(name)
    print(f"copied {', '.join(copied)} from {src} to {PREPARED_TOKENIZER} (git-ignored: carry it to the GPU machine)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, few tokens (for the test)")
    ap.add_argument("--prepare", action="store_true", help="copy SmolLM2's tokenizer to compute/bench/.gpu-tokenizer")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out", help="result folder (default $OUT)")
    ap.add_argument("--work", default="/tmp/srlm-gpu-check", help="models, data, logs (large; not under --out)")
    ap.add_argument("--tokenizer", help="tokenizer dir (SmolLM2's); 'synth' forces the synthesised fallback")
    ap.add_argument("--budget-s", type=float, help="total time budget (default 450; smoke 240)")
    ap.add_argument("--shapes", help="comma list of 1.1b,135m (default both; smoke 1.1b)")
    ap.add_argument("--device", choices=["cuda", "cpu"], help="default cuda (smoke: cpu)")
    ap.add_argument("--gen-batch", type=int)
    ap.add_argument("--prompt-tokens", type=int)
    ap.add_argument("--new-tokens", type=int)
    ap.add_argument("--dpo-pairs", type=int)
    ap.add_argument(
        "--extras", action=argparse.BooleanOptionalAction, default=None, help="greedy generation rows too (default on, off with --smoke)"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.spec)
    if args.prepare:
        return prepare(args)
    cfg = dict(SMOKE if args.smoke else FULL)
    for key in ("budget_s", "device", "gen_batch", "prompt_tokens", "new_tokens", "dpo_pairs", "extras"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.shapes:
        cfg["shapes"] = [s.strip() for s in args.shapes.split(",") if s.strip()]
        unknown = [s for s in cfg["shapes"] if s not in SHAPES]
        if unknown:
            ap.error(f"unknown shape(s) {unknown}; known: {', '.join(SHAPES)}")
    check = Check(args, cfg)

    def on_term(signum, _frame):
        for proc in list(Proc.live):
            proc.kill()
        check.notes.append(f"stopped by signal {signum} before the end")
        check.write()
        check.copy_logs()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        check.run()
    except Exception as exc:  # noqa: BLE001 - the report is still written
        check.notes.append(f"the check itself failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    check.write()
    check.copy_logs()
    print()
    print(check.markdown(), flush=True)
    print(f"written: {check.out / 'gpu-check.json'}, {check.out / 'gpu-check.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
