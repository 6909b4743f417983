"""Typed job specifications, parsed strictly from JSON.

Every CLI reads exactly one JSON object from ``--job PATH``. Parsing is strict:
an unknown key, a missing required key or a value of the wrong type raises
:class:`InvalidInput` whose message names the key (and the file), which the
CLI turns into ``{"event":"error","kind":"invalid_input"}`` and exit code 2.

The same machinery parses the per-line records of the generate requests file
(:class:`GenerateRequest`), where messages name ``file:line``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional

Device = Literal["auto", "cpu", "cuda"]


class InvalidInput(Exception):
    """Bad job or data: exit code 2, event kind ``invalid_input``."""


_MISSING = dataclasses.MISSING


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return "array"
    return {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}.get(tp, str(tp))


def _check_value(tp: Any, value: Any) -> tuple[bool, Any]:
    """Return (ok, converted_value) for a JSON value against a type annotation."""
    if tp is Any:
        return True, value
    origin = typing.get_origin(tp)
    if origin is Literal:
        return (value in typing.get_args(tp) and not isinstance(value, bool)), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, conv = _check_value(arg, value)
            if ok:
                return True, conv
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return math.isfinite(float(value)), float(value)
    if tp is str:
        return isinstance(value, str), value
    if origin is list or tp is list:
        return isinstance(value, list), value
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    return isinstance(value, tp), value


T = typing.TypeVar("T")


def parse_record(cls: type[T], obj: Any, where: str) -> T:
    """Build dataclass ``cls`` from a JSON object, strictly.

    ``where`` prefixes every message (a file name, or ``file:line``).
    """
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {type(obj).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in obj if k not in fields]
    if unknown:
        raise InvalidInput(
            f"{where}: unknown key {unknown[0]!r}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; allowed keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name not in obj:
            if f.default is _MISSING and f.default_factory is _MISSING:  # type: ignore[misc]
                raise InvalidInput(f"{where}: missing required key {name!r}")
            continue
        ok, value = _check_value(hints[name], obj[name])
        if not ok:
            raise InvalidInput(f"{where}: key {name!r} must be {_type_name(hints[name])}, got {json.dumps(obj[name])[:80]}")
        kwargs[name] = value
    record = cls(**kwargs)
    check = getattr(record, "check", None)
    if check is not None:
        check(where)
    return record


def load_job(cls: type[T], path: str) -> T:
    """Read and parse the job file at ``path``."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read job file: {exc.strerror or exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    return parse_record(cls, obj, path)


def _positive(where: str, name: str, value: float | int | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"{where}: key {name!r} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _need_dir(where: str, name: str, path: str) -> None:
    if not os.path.isdir(path):
        raise InvalidInput(f"{where}: key {name!r}: model directory not found: {path}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise InvalidInput(f"{where}: key {name!r}: {path} has no config.json (not a Hugging Face model directory)")


def _need_file(where: str, name: str, path: str) -> None:
    if not os.path.isfile(path):
        raise InvalidInput(f"{where}: key {name!r}: file not found: {path}")


def _need_output(where: str, name: str, path: str, overwrite: bool) -> None:
    if not path:
        raise InvalidInput(f"{where}: key {name!r} must not be empty")
    if os.path.exists(path) and not overwrite:
        raise InvalidInput(f'{where}: key {name!r}: {path} already exists (set "overwrite": true to replace it)')
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InvalidInput(f"{where}: key {name!r}: parent directory does not exist: {parent}")


# --------------------------------------------------------------------------- generate


@dataclass
class GenerateShard:
    input: str
    output: str

    def check(self, where: str) -> None:
        if not self.input:
            raise InvalidInput(f"{where}: key 'input' must not be empty")
        if not self.output:
            raise InvalidInput(f"{where}: key 'output' must not be empty")
        _need_file(where, "input", self.input)
        parent = os.path.dirname(os.path.abspath(self.output))
        if not os.path.isdir(parent):
            raise InvalidInput(f"{where}: key 'output': parent directory does not exist: {parent}")


@dataclass
class LocalEngine:
    """``{"kind": "local"}``: transformers in this process (the default)."""

    kind: Literal["local"]


@dataclass
class VllmEngine:
    """``{"kind": "vllm", ...}``: vLLM's offline ``LLM`` engine in this process (see vllm_engine.py)."""

    kind: Literal["vllm"]
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: Optional[int] = None  # null: the model's own context
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    requests_per_call: int = 1024  # requests handed to one LLM.generate call (lines are written after each)

    def check(self, where: str) -> None:
        _positive(where, "tensor_parallel_size", self.tensor_parallel_size)
        _positive(where, "max_model_len", self.max_model_len)
        _positive(where, "requests_per_call", self.requests_per_call)
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise InvalidInput(f"{where}: key 'gpu_memory_utilization' must be in (0, 1], got {self.gpu_memory_utilization}")


@dataclass
class GenerateJob:
    """Either ``input`` + ``output`` (one file pair) or ``shards`` (a list of them), never both."""

    # model
    model: str
    device: Device = "auto"
    threads: int = 0
    # data
    input: str = ""
    output: str = ""
    shards: Optional[list] = None  # [{"input": path, "output": path}, ...]; parsed to GenerateShard by check()
    # batching
    batch_size: int = 16
    # engine: null / {"kind": "local"} (transformers, this process) or {"kind": "vllm", ...} (VllmEngine)
    engine: Optional[dict] = None

    def check(self, where: str) -> None:
        if self.engine is not None and not isinstance(self.engine, (LocalEngine, VllmEngine)):
            kind = self.engine.get("kind")
            if kind == "local":
                self.engine = parse_record(LocalEngine, self.engine, f"{where}: engine")
            elif kind == "vllm":
                self.engine = parse_record(VllmEngine, self.engine, f"{where}: engine")
            else:
                raise InvalidInput(f'{where}: key \'engine.kind\' must be "local" or "vllm", got {json.dumps(kind)}')
        if self.shards is not None:
            given = [k for k in ("input", "output") if getattr(self, k)]
            if given:
                raise InvalidInput(
                    f"{where}: key {given[0]!r} cannot be combined with 'shards' (give either 'input' + 'output' or 'shards')"
                )
            if not self.shards:
                raise InvalidInput(f"{where}: key 'shards' must not be empty")
        else:
            if not self.input:
                raise InvalidInput(f"{where}: missing required key 'input' (or give 'shards')")
            if not self.output:
                raise InvalidInput(f"{where}: missing required key 'output' (or give 'shards')")
        _positive(where, "batch_size", self.batch_size)
        _positive(where, "threads", self.threads, allow_zero=True)
        _need_dir(where, "model", self.model)
        if self.shards is None:
            GenerateShard(input=self.input, output=self.output).check(where)
            return
        parsed: list[GenerateShard] = []
        outputs: dict[str, int] = {}
        for i, obj in enumerate(self.shards):
            if isinstance(obj, GenerateShard):  # check() already ran once
                shard = obj
                shard.check(f"{where}: shards[{i}]")
            else:
                shard = parse_record(GenerateShard, obj, f"{where}: shards[{i}]")
            key = os.path.realpath(shard.output)
            if key in outputs:
                raise InvalidInput(f"{where}: shards[{i}]: output {shard.output} is also the output of shards[{outputs[key]}]")
            outputs[key] = i
            parsed.append(shard)
        self.shards = parsed

    def shard_list(self) -> list[GenerateShard]:
        """The job's (input, output) pairs: ``shards``, or the single top-level pair."""
        if self.shards is not None:
            return list(self.shards)
        return [GenerateShard(input=self.input, output=self.output)]


@dataclass
class GenerateRequest:
    id: str
    messages: Optional[list] = None
    prompt: Optional[str] = None
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    def check(self, where: str) -> None:
        if not self.id:
            raise InvalidInput(f"{where}: key 'id' must not be empty")
        if (self.messages is None) == (self.prompt is None):
            raise InvalidInput(f"{where}: exactly one of 'messages' or 'prompt' is required")
        if self.messages is not None:
            if not self.messages:
                raise InvalidInput(f"{where}: key 'messages' must not be empty")
            for i, m in enumerate(self.messages):
                if not isinstance(m, dict) or set(m) != {"role", "content"}:
                    raise InvalidInput(f"{where}: messages[{i}] must be an object with exactly 'role' and 'content'")
                if not isinstance(m["role"], str) or m["role"] not in ("system", "user", "assistant"):
                    raise InvalidInput(f'{where}: messages[{i}].role must be "system", "user" or "assistant"')
                if not isinstance(m["content"], str):
                    raise InvalidInput(f"{where}: messages[{i}].content must be a string")
        _positive(where, "n", self.n)
        _positive(where, "max_new_tokens", self.max_new_tokens)
        _positive(where, "temperature", self.temperature, allow_zero=True)
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInput(f"{where}: key 'top_p' must be in (0, 1], got {self.top_p}")


# --------------------------------------------------------------------------- train


@dataclass
class DistributedSpec:
    """``distributed`` of a train job: how the ranks of a torchrun launch share the model.

    ``ddp``: every rank holds the whole model, gradients are all-reduced (what the Trainer does
    by itself under torchrun). ``fsdp``: PyTorch FSDP, parameters, gradients and optimizer state
    sharded across ranks ("full_shard auto_wrap"), one FSDP unit per transformer layer.
    DeepSpeed is not offered (not installed).
    """

    strategy: Literal["ddp", "fsdp"] = "ddp"
    # fsdp: class name of the layer to wrap as one unit (null: the model's _no_split_modules)
    fsdp_layer_class: Optional[str] = None

    def check(self, where: str) -> None:
        if self.fsdp_layer_class is not None:
            if self.strategy != "fsdp":
                raise InvalidInput(f"{where}: key 'fsdp_layer_class' is only used with strategy \"fsdp\"")
            if not self.fsdp_layer_class.isidentifier():
                raise InvalidInput(
                    f"{where}: key 'fsdp_layer_class' must be a Python class name such as \"LlamaDecoderLayer\", "
                    f"got {json.dumps(self.fsdp_layer_class)}"
                )


@dataclass
class TrainJob:
    # model
    mode: Literal["sft", "dpo"]
    model: str
    ref_model: Optional[str] = None
    dropout: float = 0.1
    # data
    data: str = ""
    output: str = ""
    max_length: int = 1024
    # training
    lr: float = 5.5e-6
    lr_end: float = 1.1e-6
    epochs: float = 1.0
    batch_size: int = 16
    grad_accum: int = 1
    beta: float = 0.1
    seed: int = 0
    max_steps: Optional[int] = None
    gradient_checkpointing: Optional[bool] = None  # null: on (TRL's default)
    # checkpoints (see train.py)
    checkpoint_every: Optional[int] = None  # optimizer steps; null / 0: no checkpoints
    checkpoint_dir: Optional[str] = None  # required when checkpoint_every > 0
    resume_from: Optional[str] = None  # a step-NNNNNN directory written by an earlier run
    # runtime
    device: Device = "auto"
    threads: int = 0
    overwrite: bool = False
    # multi-process training under torchrun (null: ddp when launched with several ranks); see train.py
    distributed: Optional[dict] = None
    # memory (see train.py): null precision is fp32 weights with bf16 compute on CUDA GPUs that have it
    precision: Optional[Literal["fp32", "bf16-mixed", "bf16"]] = None
    reference: Optional[Literal["copy", "precomputed"]] = None  # dpo only; null: copy
    group_by_length: Optional[bool] = None  # sft only: batches of similar lengths (less padding); null: shuffled

    def check(self, where: str) -> None:
        if self.distributed is not None and not isinstance(self.distributed, DistributedSpec):
            self.distributed = parse_record(DistributedSpec, self.distributed, f"{where}: distributed")
        if not self.data:
            raise InvalidInput(f"{where}: missing required key 'data'")
        if not self.output:
            raise InvalidInput(f"{where}: missing required key 'output'")
        _positive(where, "lr", self.lr)
        _positive(where, "lr_end", self.lr_end, allow_zero=True)
        if self.lr_end > self.lr:
            raise InvalidInput(f"{where}: key 'lr_end' ({self.lr_end}) must not exceed 'lr' ({self.lr})")
        _positive(where, "epochs", self.epochs)
        _positive(where, "batch_size", self.batch_size)
        _positive(where, "grad_accum", self.grad_accum)
        _positive(where, "beta", self.beta)
        _positive(where, "max_length", self.max_length)
        _positive(where, "max_steps", self.max_steps)
        _positive(where, "threads", self.threads, allow_zero=True)
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInput(f"{where}: key 'dropout' must be in [0, 1), got {self.dropout}")
        if self.mode == "sft" and self.ref_model is not None:
            raise InvalidInput(f"{where}: key 'ref_model' is only used with mode \"dpo\"")
        if self.mode == "sft" and self.reference is not None:
            raise InvalidInput(f"{where}: key 'reference' is only used with mode \"dpo\"")
        if self.mode == "dpo" and self.group_by_length is not None:
            raise InvalidInput(f"{where}: key 'group_by_length' is only used with mode \"sft\"")
        _need_dir(where, "model", self.model)
        if self.ref_model is not None:
            _need_dir(where, "ref_model", self.ref_model)
        _need_file(where, "data", self.data)
        _need_output(where, "output", self.output, self.overwrite)
        _positive(where, "checkpoint_every", self.checkpoint_every, allow_zero=True)
        if self.checkpoint_every and not self.checkpoint_dir:
            raise InvalidInput(f"{where}: key 'checkpoint_dir' is required when 'checkpoint_every' > 0")
        if self.checkpoint_dir is not None:
            if not self.checkpoint_dir:
                raise InvalidInput(f"{where}: key 'checkpoint_dir' must not be empty")
            ckpt = os.path.realpath(self.checkpoint_dir)
            out = os.path.realpath(self.output.rstrip("/\\"))
            for owned in (out, out + ".partial"):
                if ckpt == owned or ckpt.startswith(owned + os.sep):
                    raise InvalidInput(f"{where}: key 'checkpoint_dir' must not be inside the output directory {owned}")
            parent = os.path.dirname(ckpt)
            if not os.path.isdir(parent):
                raise InvalidInput(f"{where}: key 'checkpoint_dir': parent directory does not exist: {parent}")
            if os.path.exists(ckpt) and not os.path.isdir(ckpt):
                raise InvalidInput(f"{where}: key 'checkpoint_dir': {self.checkpoint_dir} is not a directory")
        if self.resume_from is not None and not os.path.isdir(self.resume_from):
            raise InvalidInput(f"{where}: key 'resume_from': checkpoint directory not found: {self.resume_from}")


def _non_empty(where: str, record: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if not getattr(record, name).strip():
            raise InvalidInput(f"{where}: key {name!r} must not be empty")


@dataclass
class SFTExample:
    prompt: str
    completion: str
    id: Any = None
    kind: Any = None

    def check(self, where: str) -> None:
        _non_empty(where, self, ("prompt", "completion"))


@dataclass
class DPOExample:
    prompt: str
    chosen: str
    rejected: str
    id: Any = None

    def check(self, where: str) -> None:
        _non_empty(where, self, ("prompt", "chosen", "rejected"))


# --------------------------------------------------------------------------- make-tiny-model


@dataclass
class TinyModelJob:
    tokenizer: str
    output: str
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    seed: int = 0
    overwrite: bool = False

    def check(self, where: str) -> None:
        if not os.path.isdir(self.tokenizer):
            raise InvalidInput(f"{where}: key 'tokenizer': directory not found: {self.tokenizer}")
        if not any(
            os.path.isfile(os.path.join(self.tokenizer, name)) for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
        ):
            raise InvalidInput(f"{where}: key 'tokenizer': {self.tokenizer} holds no tokenizer files")
        _positive(where, "hidden_size", self.hidden_size)
        _positive(where, "layers", self.layers)
        _positive(where, "heads", self.heads)
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
            raise InvalidInput(f"{where}: key 'hidden_size' ({self.hidden_size}) must be 'heads' ({self.heads}) times an even number")
        _positive(where, "seed", self.seed, allow_zero=True)
        _need_output(where, "output", self.output, self.overwrite)


# --------------------------------------------------------------------------- import-model


@dataclass
class ImportJob:
    output: str
    packaged: Optional[str] = None
    gguf: Optional[str] = None
    overwrite: bool = False

    def check(self, where: str) -> None:
        from .import_model import PACKAGED  # local import: keeps jobs.py free of heavy deps

        if (self.packaged is None) == (self.gguf is None):
            raise InvalidInput(f"{where}: exactly one of 'packaged' or 'gguf' is required")
        if self.packaged is not None and self.packaged not in PACKAGED:
            raise InvalidInput(f"{where}: key 'packaged': unknown packaged model {self.packaged!r}; known: {', '.join(PACKAGED)}")
        if self.gguf is not None:
            _need_file(where, "gguf", self.gguf)
        _need_output(where, "output", self.output, self.overwrite)


@dataclass
class LocateJob:
    packaged: str

    def check(self, where: str) -> None:
        from .import_model import PACKAGED

        if self.packaged not in PACKAGED:
            raise InvalidInput(f"{where}: key 'packaged': unknown packaged model {self.packaged!r}; known: {', '.join(PACKAGED)}")


def read_jsonl(path: str, cls: type[T], strict: bool = True) -> list[tuple[int, T]]:
    """Parse a JSON-lines file into records, naming ``file:line`` on any problem.

    Blank lines are skipped. With ``strict=False`` unknown keys are dropped
    instead of rejected (data files may carry extra bookkeeping keys).
    """
    records: list[tuple[int, T]] = []
    allowed = {f.name for f in dataclasses.fields(cls)}
    try:
        fh = open(path, "r", encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not strict and isinstance(obj, dict):
                obj = {k: v for k, v in obj.items() if k in allowed}
            records.append((lineno, parse_record(cls, obj, where)))
    return records


__all__ = [
    "InvalidInput",
    "GenerateJob",
    "GenerateShard",
    "GenerateRequest",
    "TrainJob",
    "SFTExample",
    "DPOExample",
    "ImportJob",
    "LocateJob",
    "TinyModelJob",
    "load_job",
    "parse_record",
    "read_jsonl",
]
