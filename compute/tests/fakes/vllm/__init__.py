"""A FAKE ``vllm`` package for the tests of srlm_compute.vllm_engine: it is not vLLM.

vLLM cannot be installed on the test machines (CUDA wheels, no GPU), so test_vllm_engine.py
puts this directory on the ``PYTHONPATH`` of the ``generate`` process it starts. The fake
has the few names srlm uses (``LLM``, ``SamplingParams``, ``LLM.generate`` returning objects
with ``.outputs[0].text / .token_ids / .finish_reason``), records every call as JSON lines
in the file named by ``FAKE_VLLM_LOG`` and answers deterministically from the prompt and the
sampling parameters (:func:`fake_completion`), so a test can compute what each sample
must be:

* ``L = 1 + seed % (max_tokens + 3)`` tokens (greedy, temperature 0: ``L = 1 + len(prompt) % (max_tokens + 3)``);
* ``L <= max_tokens``: finish_reason "stop", token ids ``[100, 101, ...]`` of length L - 1 and
  then ``stop_token_ids[0]`` (the stop token is part of the output, as in vLLM);
* ``L > max_tokens``: finish_reason "length", ``max_tokens`` token ids;
* ``max_tokens == 13``: finish_reason "abort" (to test that srlm refuses it);
* text: ``"<fake t=<temperature> p=<top_p> seed=<seed> prompt=<prompt length> len=<L>>"``.

``LLM(...).llm_engine.model_config.max_model_len`` is the ``max_model_len`` given, else
``FAKE_VLLM_DERIVED_MAX_MODEL_LEN`` (standing in for the length vLLM derives from the model), else None.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

__version__ = "0.0.0+fake"

_SAMPLING_KEYS = {
    "n",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "seed",
    "stop",
    "stop_token_ids",
    "skip_special_tokens",
    "ignore_eos",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
}
_LLM_KEYS = {
    "model",
    "tokenizer",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "dtype",
    "seed",
    "trust_remote_code",
    "enforce_eager",
    "quantization",
}


def _log(obj: dict) -> None:
    path = os.environ.get("FAKE_VLLM_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj) + "\n")


class SamplingParams:
    def __init__(self, **kwargs):
        unknown = set(kwargs) - _SAMPLING_KEYS
        if unknown:
            raise TypeError(f"fake SamplingParams: unexpected keyword(s) {sorted(unknown)}")
        self.kwargs = kwargs
        self.n = kwargs.get("n", 1)
        self.temperature = kwargs.get("temperature", 1.0)
        self.top_p = kwargs.get("top_p", 1.0)
        self.max_tokens = kwargs.get("max_tokens", 16)
        self.seed = kwargs.get("seed")
        self.stop_token_ids = kwargs.get("stop_token_ids") or []


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    finish_reason: str | None
    stop_reason: object = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list
    outputs: list = field(default_factory=list)
    finished: bool = True


def fake_completion(prompt_ids: list, params: SamplingParams) -> tuple[str, list, str]:
    """(text, token_ids, finish_reason) the fake answers for one sample."""
    basis = len(prompt_ids) if params.temperature == 0 else int(params.seed or 0)
    length = 1 + basis % (params.max_tokens + 3)
    text = f"<fake t={params.temperature} p={params.top_p} seed={params.seed} prompt={len(prompt_ids)} len={length}>"
    if params.max_tokens == 13:
        return text, [100] * 3, "abort"
    if length <= params.max_tokens:
        return text, [100 + i for i in range(length - 1)] + [params.stop_token_ids[0]], "stop"
    return text, [100 + i for i in range(params.max_tokens)], "length"


class LLM:
    def __init__(self, model: str, **kwargs):
        unknown = set(kwargs) - _LLM_KEYS
        if unknown:
            raise TypeError(f"fake LLM: unexpected keyword(s) {sorted(unknown)}")
        self.model = model
        derived = kwargs.get("max_model_len") or int(os.environ.get("FAKE_VLLM_DERIVED_MAX_MODEL_LEN", "0")) or None
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=derived))
        _log({"call": "LLM", "kwargs": {"model": model, **kwargs}})

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        if not isinstance(sampling_params, list) or len(sampling_params) != len(prompts):
            raise TypeError("fake LLM.generate: expects one SamplingParams per prompt")
        _log(
            {
                "call": "generate",
                "use_tqdm": use_tqdm,
                "prompts": [p["prompt_token_ids"] for p in prompts],
                "params": [sp.kwargs for sp in sampling_params],
            }
        )
        results = []
        for i, (prompt, sp) in enumerate(zip(prompts, sampling_params)):
            ids = prompt["prompt_token_ids"]
            outs = []
            for j in range(sp.n):
                text, token_ids, reason = fake_completion(ids, sp)
                outs.append(CompletionOutput(index=j, text=text, token_ids=token_ids, finish_reason=reason))
            results.append(RequestOutput(request_id=str(i), prompt_token_ids=ids, outputs=outs))
        return results
