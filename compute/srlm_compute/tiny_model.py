"""A tiny, randomly initialised Llama model, for tests and benchmarks of the machinery only.

    PYTHONPATH=compute python -m srlm_compute make-tiny-model --job job.json

Job (strict, like every other job)::

    {"tokenizer": "<HF dir with tokenizer files + chat template>", "output": "<dir>",
     "hidden_size": 64, "layers": 2, "heads": 4, "seed": 0, "overwrite": false}

The model is a ``LlamaForCausalLM`` with random weights: it writes gibberish
and is useless as a language model. It exists so that tests and benchmarks of
the plumbing (generate sharding / resume, training checkpoints, kill and resume)
run in seconds instead of minutes. Shape: vocabulary = ``len(tokenizer)``,
``hidden_size``, ``layers`` decoder layers with ``heads`` attention (and
key/value) heads, MLP width ``4 * hidden_size``, ``max_position_embeddings``
2048, tied input / output embeddings, float32.

Weights are drawn after ``torch.manual_seed(seed)``, so the same job (and the
same torch / transformers versions) gives a byte-identical
``model.safetensors``. The tokenizer (with its chat template) is copied
through ``save_pretrained``; ``generation_config.json`` takes bos / eos / pad
from the tokenizer (pad = eos when the tokenizer has none). Everything is
written to ``output + ".partial"`` and renamed to ``output`` when complete.

Done event: ``{"event":"done","output":...,"params":...,"vocab_size":...,
"sha256": <of model.safetensors>}``.
"""

from __future__ import annotations

import hashlib
import os

from . import progress
from .jobs import InvalidInput, TinyModelJob, load_job

MAX_POSITIONS = 2048


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def special_token_ids(tokenizer, where: str) -> tuple[int | None, int, int]:
    """(bos, eos, pad) for a model built around ``tokenizer`` (pad = eos when it has none).

    The tokenizer must have a chat template and an eos token (else InvalidInput naming ``where``).
    """
    if not tokenizer.chat_template:
        raise InvalidInput(f"{where}: the tokenizer has no chat template")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InvalidInput(f"{where}: the tokenizer has no eos token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return tokenizer.bos_token_id, eos, pad


def save_model_dir(model, tokenizer, output: str) -> str:
    """Write model + tokenizer to ``output + ".partial"``, rename it to ``output``; sha256 of the weights."""
    from .runtime import fresh_partial_dir, publish_dir, remove_partial

    try:
        partial = fresh_partial_dir(output)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        digest = _sha256(os.path.join(partial, "model.safetensors"))
        publish_dir(partial, output)
    except BaseException:
        remove_partial(output)
        raise
    return digest


def main(job_path: str) -> int:
    job = load_job(TinyModelJob, job_path)

    from .runtime import quiet_libraries

    quiet_libraries(datasets=False)
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    progress.emit("start", cmd="make-tiny-model", tokenizer=job.tokenizer, output=job.output)
    tokenizer = AutoTokenizer.from_pretrained(job.tokenizer)
    bos, eos, pad = special_token_ids(tokenizer, job.tokenizer)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=job.hidden_size,
        intermediate_size=4 * job.hidden_size,
        num_hidden_layers=job.layers,
        num_attention_heads=job.heads,
        num_key_value_heads=job.heads,
        head_dim=job.hidden_size // job.heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        rms_norm_eps=1e-5,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        use_cache=True,
    )
    torch.manual_seed(job.seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    params = sum(p.numel() for p in model.parameters())
    digest = save_model_dir(model, tokenizer, job.output)

    progress.emit(
        "done",
        output=job.output,
        params=params,
        vocab_size=config.vocab_size,
        hidden_size=job.hidden_size,
        layers=job.layers,
        heads=job.heads,
        seed=job.seed,
        sha256=digest,
    )
    return 0
