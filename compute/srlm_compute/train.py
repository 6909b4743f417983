"""SFT and DPO training with TRL.

    PYTHONPATH=compute python -m srlm_compute train --job job.json

Job::

    {"mode": "sft" | "dpo",
     # model
     "model": "<HF dir>", "ref_model": "<HF dir>" | null, "dropout": 0.1,
     # data
     "data": "train.jsonl", "output": "<dir>", "max_length": 1024,
     # training
     "lr": 5.5e-6, "lr_end": 1.1e-6, "epochs": 1, "batch_size": 16, "grad_accum": 1,
     "beta": 0.1, "seed": 0, "max_steps": null, "gradient_checkpointing": true,
     # checkpoints
     "checkpoint_every": null, "checkpoint_dir": null, "resume_from": null,
     # runtime
     "device": "auto", "threads": 0, "overwrite": false,
     # several processes (torchrun; see below)
     "distributed": null | {"strategy": "ddp" | "fsdp", "fsdp_layer_class": null | "LlamaDecoderLayer"},
     # memory (see below)
     "precision": null | "fp32" | "bf16-mixed" | "bf16", "reference": null | "copy" | "precomputed",
     # sft: batches of similar lengths (TrainingArguments' group_by_length sampler; null: shuffled)
     "group_by_length": null | true}

Data lines (extra keys are ignored; a missing/empty field is exit 2 with ``file:line``)::

    sft: {"id": ..., "prompt": "...", "completion": "...", "kind": ...}
    dpo: {"id": ..., "prompt": "...", "chosen": "...", "rejected": "..."}

Each line becomes a *conversational* example (user prompt, assistant reply)
rendered with the model's chat template by TRL. SFT uses SFTTrainer's
prompt-completion format with ``completion_only_loss=True`` (loss on the
assistant completion tokens only). DPO uses DPOTrainer (sigmoid loss, ``beta``
from the job); the reference model is ``ref_model`` or, when null, TRL's
default: a frozen copy of ``model`` loaded from the same directory.

Schedule: cosine decay from ``lr`` to ``lr_end`` (transformers'
``cosine_with_min_lr``, ``min_lr=lr_end``), no warmup. Dropout: every numeric
``*dropout*`` / ``*pdrop`` field of the model config is set to ``dropout``
before the model is built (DPO's ``disable_dropout`` is turned off so it stays
active); the saved config gets the original values back, and
``metrics.json`` records the fields under ``dropout_fields``.

Output: model + tokenizer (safetensors) and ``metrics.json`` are written to
``output + ".partial"`` and renamed to ``output`` only when complete.
Progress, one line per optimizer step::

    {"event":"progress","step":s,"total_steps":T,"loss":...,"epoch":...,"lr":...,
     "grad_norm":..., (dpo) "rewards_accuracy":..., "rewards_margin":...}

Gradient checkpointing is on unless the job sets ``"gradient_checkpointing": false``
(faster, but activations then take ~1.9 MB per token for SmolLM2-135M).
No hub, no reporting.

Checkpoints (``checkpoint_every`` > 0, optimizer steps; null / 0: none, the
default): after every ``checkpoint_every``-th optimizer step except the last
one, the full Trainer checkpoint (weights, optimizer, scheduler, RNG states,
trainer state with the global step, i.e. what transformers saves as
``checkpoint-N``) is published atomically as
``<checkpoint_dir>/step-NNNNNN/`` with a ``manifest.json`` (kind, step, mode,
sha256 + size of every file) written last; see :mod:`srlm_compute.checkpoints`.
Then::

    {"event":"checkpoint","step":N,"dir":"<absolute path of step-NNNNNN>"}

The consumer may upload and delete published checkpoints at any time; this
process never reads them again. Stale ``step-*.partial`` directories in
``checkpoint_dir`` (from killed runs) are removed at start. A checkpoint is
moved out of the trainer's own ``<output>.partial`` directory, so that one does
not grow.

Resume (``resume_from``: a ``step-NNNNNN`` directory from an earlier run of the
same job): the manifest is verified first (present, every listed file present
with the listed size and sha256, the files a resume needs listed, same
``mode``); any problem is exit 2 naming the file, and nothing is loaded. Then
``trainer.train(resume_from_checkpoint=...)`` restores weights, optimizer,
scheduler, RNG states and the data position, so the first progress event is
step N+1 and, on CPU, the final weights equal those of an uninterrupted run
(same job, same thread count). The data, batch size, grad_accum, epochs /
max_steps and seed must be those of the original job; this is not checked.
``start`` and ``metrics.json`` carry ``resumed_from_step`` (0 when not resumed).
After a resume ``train_loss``, ``runtime_s``, ``seconds_per_step``, ``last`` and
``mean`` cover only the steps this process ran (``steps_run``); ``steps`` is the
final global step.

Several processes (torchrun): run ``python -m srlm_compute.launch [torchrun options] -m
srlm_compute train --job f.json`` (see :mod:`srlm_compute.launch`; plain torchrun works too, but
exits 1 for every failure and interleaves the ranks' error lines). Each rank reads the same job;
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` come from torchrun and the Trainer runs DDP (the gloo
backend on CPU, NCCL on CUDA). ``batch_size`` is the GLOBAL batch: each rank takes
``batch_size / WORLD_SIZE`` examples per micro-batch, so one optimizer step still sees
``batch_size * grad_accum`` examples and a job's steps, schedule and hyperparameters mean the
same on 1 or N processes (the paper's batch 16 stays 16); a ``batch_size`` that is not a
multiple of ``WORLD_SIZE`` is exit 2. Every rank seeds with ``seed`` (the Trainer's choice:
identical initial weights; the distributed sampler gives each rank different examples). Only
rank 0 takes the output lock, writes ``<output>.partial``, ``metrics.json``, the model and the
checkpoint manifests, and prints events; other ranks print only ``error`` events (with
``"rank"``). Checkpoints hold the RNG state of every rank (``rng_state_<rank>.pth``); all ranks
resume from the job's ``resume_from``. ``start`` and ``metrics.json`` carry ``world_size``,
``per_device_batch_size`` and ``strategy``.

``distributed.strategy``: ``"ddp"`` (default) replicates the model on every rank; ``"fsdp"``
shards parameters, gradients and optimizer state (the Trainer's FSDP, version 2,
``"full_shard auto_wrap"`` with one unit per transformer layer: ``fsdp_layer_class`` or the
model's first ``_no_split_modules``, e.g. ``LlamaDecoderLayer``; gradient checkpointing becomes
FSDP's activation checkpointing). FSDP needs CUDA: accelerate does not shard on CPU, so
``"fsdp"`` with a CPU device is exit 2. DeepSpeed ZeRO is not offered (not installed). With
FSDP, checkpoints are accelerate's sharded files (``pytorch_model_fsdp_0/``, ``optimizer_0/``),
which :func:`srlm_compute.checkpoints.verify` accepts, and the final model is gathered to rank
0 and saved as one safetensors file.

Memory. ``precision``: ``"fp32"`` trains fp32 weights in fp32; ``"bf16-mixed"`` keeps fp32
weights, gradients and AdamW state and computes in bf16 (the Trainer's ``bf16``); ``"bf16"`` loads
the weights in bf16, so gradients and AdamW state are bf16 too (half the memory; an update below
bf16's resolution, ~0.4% of a weight, is lost, as most are at DPO's learning rates); null (the
default, what every test uses) is fp32 weights with bf16 compute only on CUDA GPUs that support
it. A frozen DPO reference is held in bf16 under ``bf16-mixed`` / ``bf16``. Models are built on
the meta device and filled from the weight files (transformers' loading), so a load costs one
copy in the final dtype; under FSDP on several ranks only local rank 0 of each node reads the
weights (``cpu_ram_efficient_loading``) and the others receive their shards. ``reference``
(dpo): ``"copy"`` (null) keeps a second model resident for the reference log-probs (TRL loads
the job's model again, or ``ref_model``); ``"precomputed"`` computes them once with the reference
(``ref_model``, else the policy before its first step) while the trainer is built (TRL's
``precompute_ref_log_probs``) and drops it, so training holds one model; every rank keeps the
values in memory (TRL would have the other ranks read a cache file that only global rank 0
writes, in a per-process temporary directory). ``metrics.json`` carries
``precision``, ``reference``, ``reference_resident`` (dpo: whether a reference model was held during
training) and ``peak_rss_mb_per_rank`` (every rank's peak RSS, in rank order).

Lock: the process holds ``flock`` on ``<output>.lock`` from before it touches
``<output>.partial`` until it exits; another holder makes it wait up to 30 s
(``SRLM_LOCK_WAIT_S``), then fail with exit 1.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from . import checkpoints, progress
from .jobs import DistributedSpec, DPOExample, InvalidInput, SFTExample, TrainJob, load_job, read_jsonl

DPO_LOG_KEYS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


def dropout_fields(config) -> list[str]:
    """Names of the numeric dropout fields of a (text) model config."""
    names = []
    for key, value in config.to_dict().items():
        if ("dropout" in key or key.endswith("pdrop")) and isinstance(value, (int, float)) and not isinstance(value, bool):
            names.append(key)
    return sorted(names)


def load_examples(job: TrainJob) -> list[dict[str, Any]]:
    cls = SFTExample if job.mode == "sft" else DPOExample
    records = read_jsonl(job.data, cls, strict=False)
    if not records:
        raise InvalidInput(f"{job.data}:1: no training examples (empty data file)")
    rows = []
    for _, ex in records:
        user = [{"role": "user", "content": ex.prompt}]
        if job.mode == "sft":
            rows.append({"prompt": user, "completion": [{"role": "assistant", "content": ex.completion}]})
        else:
            rows.append(
                {
                    "prompt": user,
                    "chosen": [{"role": "assistant", "content": ex.chosen}],
                    "rejected": [{"role": "assistant", "content": ex.rejected}],
                }
            )
    return rows


def _make_progress_callback(mode: str, history: list[dict]):
    from transformers import TrainerCallback

    class JsonProgress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return  # the end-of-training summary (train_runtime, ...) is reported in "done"
            history.append(dict(logs))
            event = {
                "step": state.global_step,
                "total_steps": state.max_steps,
                "loss": logs.get("loss"),
                "epoch": logs.get("epoch"),
                "lr": logs.get("learning_rate"),
                "grad_norm": logs.get("grad_norm"),
            }
            if mode == "dpo":
                event["rewards_accuracy"] = logs.get("rewards/accuracies")
                event["rewards_margin"] = logs.get("rewards/margins")
            progress.emit("progress", **event)

    return JsonProgress()


def _summary(history: list[dict], keys) -> tuple[dict, dict]:
    last: dict[str, float] = {}
    mean: dict[str, float] = {}
    for key in keys:
        values = [h[key] for h in history if isinstance(h.get(key), (int, float))]
        if values:
            last[key] = values[-1]
            mean[key] = sum(values) / len(values)
    return last, mean


def per_device_batch(job: TrainJob, world_size: int, where: str) -> int:
    """The Trainer's per-device batch: ``batch_size`` is global, split evenly across the ranks."""
    if job.batch_size % world_size:
        raise InvalidInput(
            f"{where}: key 'batch_size' ({job.batch_size}) must be divisible by the number of training processes "
            f"({world_size}): it is the global batch, split evenly across the ranks"
        )
    return job.batch_size // world_size


def fsdp_layer_class(model, spec: DistributedSpec, where: str) -> str:
    """The transformer layer class FSDP wraps as one unit: the job's, or the model's first ``_no_split_modules``."""
    names = {type(m).__name__ for m in model.modules()}
    if spec.fsdp_layer_class is not None:
        if spec.fsdp_layer_class not in names:
            raise InvalidInput(f"{where}: key 'distributed.fsdp_layer_class': the model has no module of class {spec.fsdp_layer_class!r}")
        return spec.fsdp_layer_class
    for name in getattr(model, "_no_split_modules", None) or []:
        if name in names:
            return name
    raise InvalidInput(
        f"{where}: {type(model).__name__} declares no transformer layer class (_no_split_modules); "
        "set 'distributed.fsdp_layer_class' for FSDP"
    )


@dataclass
class LoadedModels:
    tokenizer: Any
    model: Any
    ref_model: Any  # None: TRL's reference (a copy of ``model``'s weights, or none when precomputed)
    dropout_fields: list[str]
    original_dropout: dict[str, Any]


def bf16_compute(precision: str | None, device: str) -> bool:
    """Whether the Trainer computes in bf16 (autocast): the precision's choice; null: CUDA GPUs that have bf16."""
    import torch

    if precision is None:
        return device == "cuda" and torch.cuda.is_bf16_supported()
    return precision != "fp32"


def load_models(job: TrainJob, spec: DistributedSpec, me) -> LoadedModels:
    """Tokenizer, policy and (DPO) the resident reference, each in the dtype the job's precision keeps it.

    transformers builds a model on the meta device and fills it from the safetensors files, so a
    load costs one copy of the weights in their final dtype. The policy is float32 unless the
    precision is ``bf16``; a frozen reference needs no fp32 master copy, so with ``bf16-mixed`` /
    ``bf16`` it is held in bf16 (loaded here, not by TRL, which would copy the policy's dtype).
    ``reference: "precomputed"`` keeps none: TRL computes its log-probs with the policy before
    training. Under FSDP on several ranks only local rank 0 reads the weights; the others stay on
    the meta device until FSDP hands them their shards (transformers' ``is_fsdp_enabled``).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if me.distributed and spec.strategy == "fsdp":
        from accelerate import PartialState

        os.environ["ACCELERATE_USE_FSDP"] = "true"
        os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "true"
        PartialState()  # the process group, which transformers needs to tell rank 0 from the others
    tokenizer = AutoTokenizer.from_pretrained(job.model)
    if not tokenizer.chat_template:
        raise InvalidInput(f"{job.model}: the tokenizer has no chat template (conversational training needs one)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(job.model)
    text_config = config.get_text_config()
    fields = dropout_fields(text_config)
    original_dropout = {name: getattr(text_config, name) for name in fields}
    for name in fields:
        setattr(text_config, name, job.dropout)
    if not fields:
        progress.log(f"warning: {config.model_type} config has no dropout fields; 'dropout' has no effect")
    policy_dtype = torch.bfloat16 if job.precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(job.model, config=config, dtype=policy_dtype)
    model.config.use_cache = False
    ref_model = None
    if job.mode == "dpo":
        frozen_dtype = torch.bfloat16 if job.precision in ("bf16-mixed", "bf16") else torch.float32
        if job.ref_model is not None:
            ref_model = AutoModelForCausalLM.from_pretrained(job.ref_model, dtype=frozen_dtype)
        elif job.reference != "precomputed" and frozen_dtype != policy_dtype:
            ref_model = AutoModelForCausalLM.from_pretrained(job.model, dtype=frozen_dtype)
        if ref_model is not None:
            ref_model.config.use_cache = False
    return LoadedModels(tokenizer, model, ref_model, fields, original_dropout)


def gradient_checkpointing(job: TrainJob) -> bool:
    """TRL's default (on): activations of SmolLM2-135M cost ~1.9 MB per training token without it,
    which overflows 24 GiB at batch 16 x a few hundred tokens; recomputation costs about one extra forward."""
    return bool(job.gradient_checkpointing) if job.gradient_checkpointing is not None else True


def trainer_arguments(
    job: TrainJob, spec: DistributedSpec, me, device: str, model, output_dir: str, checkpoint_every: int, where: str = "job"
) -> dict:
    """The TrainingArguments every mode shares: schedule, logging, checkpoints, precision, DDP / FSDP."""
    bf16 = bf16_compute(job.precision, device)
    per_device = per_device_batch(job, me.size, where)
    grad_ckpt = gradient_checkpointing(job)
    common = dict(
        output_dir=output_dir,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=job.grad_accum,
        learning_rate=job.lr,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr": job.lr_end},
        warmup_steps=0,
        num_train_epochs=job.epochs,
        max_steps=job.max_steps if job.max_steps is not None else -1,
        max_length=job.max_length,
        logging_strategy="steps",
        logging_steps=1,
        logging_first_step=True,
        save_strategy="steps" if checkpoint_every else "no",
        save_steps=checkpoint_every if checkpoint_every else 500,
        eval_strategy="no",
        report_to="none",
        push_to_hub=False,
        seed=job.seed,
        data_seed=job.seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        fp16=False,
        gradient_checkpointing=grad_ckpt,
        disable_tqdm=True,
        log_level="error",
        dataloader_num_workers=0,
        dataloader_pin_memory=device == "cuda",
    )
    if job.group_by_length:
        # batches of similar lengths: less padding to compute (the sampler is seeded, so a resume
        # skips the same batches)
        common["train_sampling_strategy"] = "group_by_length"
    if me.distributed and device == "cpu":
        common["ddp_backend"] = "gloo"
    if me.distributed and spec.strategy == "ddp":
        # every parameter gets a gradient every step: skip DDP's search for unused ones
        common["ddp_find_unused_parameters"] = False
    if me.distributed and spec.strategy == "fsdp":
        layer = fsdp_layer_class(model, spec, where)
        # FSDP's own activation checkpointing replaces the Trainer's (which would recompute twice)
        common["fsdp"] = "full_shard auto_wrap"
        common["fsdp_config"] = {
            "transformer_layer_cls_to_wrap": [layer],
            "activation_checkpointing": grad_ckpt,
            # local rank 0 read the weights (load_models); FSDP sends every rank its shards
            "cpu_ram_efficient_loading": True,
        }
        common["gradient_checkpointing"] = False
    return common


def make_trainer(job: TrainJob, model, ref_model, tokenizer, dataset, common: dict, callbacks: list):
    """SFTTrainer or DPOTrainer over ``common`` TrainingArguments.

    DPO with ``reference: "precomputed"``: TRL's ``precompute_ref_log_probs`` runs the reference
    (``ref_model``, else the policy before its first step) over the whole dataset while the
    trainer is built; the reference is dropped afterwards, so training holds one model.
    """
    if job.mode == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, completion_only_loss=True, packing=False)
        return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    from trl import DPOConfig

    precompute = job.reference == "precomputed"
    args = DPOConfig(**common, beta=job.beta, disable_dropout=False, loss_type=["sigmoid"], precompute_ref_log_probs=precompute)
    trainer = _dpo_trainer_class()(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if precompute:
        trainer.ref_model = None  # the loss reads the precomputed log-probs from each batch
    return trainer


def _dpo_trainer_class():
    """TRL's DPOTrainer, with the precomputed reference log-probs kept in memory on every rank.

    TRL writes them to a datasets cache file on global rank 0 only and every rank reads that
    file back: an in-memory dataset's cache lives in a per-process temporary directory, and nodes
    share no disk, so the other ranks would not find it. Every rank already holds all the values
    (they are gathered across ranks, in dataset order), so each adds them as columns itself.
    """
    import torch
    from torch.utils.data import DataLoader
    from trl import DPOTrainer

    class DPOTrainerInMemoryReference(DPOTrainer):
        def _precompute_ref_logps(self, dataset, name, batch_size):
            loader = self.accelerator.prepare(
                DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False, num_workers=0)
            )
            model = self.ref_model or self.model
            chosen, rejected = [], []
            for batch in loader:
                c, r = self.accelerator.gather_for_metrics(self.compute_ref_log_probs(model, batch))
                chosen.append(c.float().cpu())
                rejected.append(r.float().cpu())
            return dataset.add_column("ref_chosen_logps", torch.cat(chosen).numpy()).add_column(
                "ref_rejected_logps", torch.cat(rejected).numpy()
            )

    return DPOTrainerInMemoryReference


def gather_peak_rss(me) -> list[float]:
    """Every rank's peak RSS in MiB, in rank order (a collective: every rank calls it)."""
    from .runtime import peak_rss_mb

    mine = round(peak_rss_mb(), 1)
    if not me.distributed:
        return [mine]
    import torch.distributed as dist

    out: list[Any] = [None] * me.size
    dist.all_gather_object(out, mine)
    return [float(v) for v in out]


def main(job_path: str) -> int:
    job = load_job(TrainJob, job_path)
    t_start = time.monotonic()
    from .runtime import world

    me = world()
    spec = job.distributed if isinstance(job.distributed, DistributedSpec) else DistributedSpec()
    per_device = per_device_batch(job, me.size, job_path)
    if spec.strategy == "fsdp" and not me.distributed:
        progress.log('note: distributed.strategy "fsdp" with a single process trains without sharding')
    rows = load_examples(job)
    resumed_from_step = 0
    resume_dir = None
    if job.resume_from is not None:
        # Before anything heavy and before any output is touched: a torn checkpoint is never loaded.
        resumed_from_step = checkpoints.verify(job.resume_from, job.mode)["step"]
        resume_dir = os.path.abspath(job.resume_from)
    checkpoint_every = job.checkpoint_every or 0

    from .runtime import lock_output

    if me.main:  # rank 0 owns the output and the published checkpoints
        lock_output(job.output)  # held until exit
        if checkpoint_every and job.checkpoint_dir:
            checkpoints.clean_partials(job.checkpoint_dir)

    from .runtime import quiet_libraries

    quiet_libraries()
    import torch
    from datasets import Dataset

    from .runtime import (
        fresh_partial_dir,
        leave_process_group,
        peak_rss_mb,
        publish_dir,
        remove_partial,
        resolve_device,
        set_threads,
    )

    device = resolve_device(job.device)
    if me.distributed and spec.strategy == "fsdp" and device != "cuda":
        # accelerate builds its FSDP plugin only for accelerators; on CPU it would quietly run DDP
        raise InvalidInput(f'{job_path}: key \'distributed.strategy\': "fsdp" needs CUDA GPUs (device is {device!r}); use "ddp" on CPU')
    set_threads(job.threads)
    progress.emit(
        "start",
        cmd="train",
        mode=job.mode,
        model=job.model,
        ref_model=job.ref_model,
        device=device,
        examples=len(rows),
        threads=torch.get_num_threads(),
        resumed_from_step=resumed_from_step,
        checkpoint_every=checkpoint_every,
        world_size=me.size,
        strategy=spec.strategy if me.distributed else None,
        per_device_batch_size=per_device,
        precision=job.precision,
        reference=job.reference,
    )

    loaded = load_models(job, spec, me)
    tokenizer, model, ref_model = loaded.tokenizer, loaded.model, loaded.ref_model
    fields, original_dropout = loaded.dropout_fields, loaded.original_dropout
    initial_params = sum(p.numel() for p in model.parameters())

    partial = job.output.rstrip("/\\") + ".partial"
    if me.main:
        remove_partial(job.output)  # a leftover of a killed run
    grad_ckpt = gradient_checkpointing(job)
    common = trainer_arguments(job, spec, me, device, model, partial, checkpoint_every, job_path)
    history: list[dict] = []
    callbacks = [_make_progress_callback(job.mode, history)]
    if checkpoint_every:

        def published(step: int, path: str) -> None:
            progress.emit("checkpoint", step=step, dir=path)

        callbacks.append(checkpoints.make_callback(checkpoint_every, job.checkpoint_dir, job.mode, published, world_size=me.size))
    dataset = Dataset.from_list(rows)

    trainer = make_trainer(job, model, ref_model, tokenizer, dataset, common, callbacks)
    if me.distributed and spec.strategy == "fsdp" and not getattr(trainer, "is_fsdp_enabled", False):
        raise RuntimeError('distributed.strategy is "fsdp" but the Trainer did not enable FSDP')
    n_train = len(trainer.train_dataset) if trainer.train_dataset is not None else 0
    if n_train == 0:
        raise InvalidInput(f"{job.data}: no example fits max_length={job.max_length}")

    reference_resident = getattr(trainer, "ref_model", None) is not None
    t_train = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=resume_dir)
        train_s = time.monotonic() - t_train

        # FSDP: every rank takes part in gathering the full weights; only rank 0 writes
        fsdp = me.distributed and spec.strategy == "fsdp"
        state_dict = trainer.accelerator.get_state_dict(trainer.model) if fsdp else None
        rss_per_rank = gather_peak_rss(me)
        if not me.main:
            leave_process_group()
            return 0
        trained = trainer.accelerator.unwrap_model(trainer.model)
        # The checkpoint keeps the original dropout values; training-time dropout is a job setting.
        saved_text_config = trained.config.get_text_config()
        for name, value in original_dropout.items():
            setattr(saved_text_config, name, value)
        trained.config.use_cache = True

        last, mean = _summary(history, DPO_LOG_KEYS if job.mode == "dpo" else ("loss", "grad_norm"))
        steps = int(result.global_step)
        steps_run = steps - resumed_from_step
        metrics = {
            "mode": job.mode,
            "train_loss": result.training_loss,
            "steps": steps,
            "steps_run": steps_run,
            "resumed_from_step": resumed_from_step,
            "runtime_s": round(train_s, 3),
            "seconds_per_step": round(train_s / steps_run, 3) if steps_run > 0 else None,
            "examples": n_train,
            "epochs": result.metrics.get("epoch", history[-1].get("epoch") if history else None),
            "batch_size": job.batch_size,
            "grad_accum": job.grad_accum,
            "world_size": me.size,
            "per_device_batch_size": per_device,
            "strategy": spec.strategy if me.distributed else None,
            "lr": job.lr,
            "lr_end": job.lr_end,
            "final_lr": history[-1].get("learning_rate") if history else None,
            "beta": job.beta if job.mode == "dpo" else None,
            "dropout": job.dropout,
            "dropout_fields": fields,
            "ref_model": job.ref_model if job.mode == "dpo" else None,
            "device": device,
            "params": initial_params,
            "gradient_checkpointing": grad_ckpt,
            "sampler": str(getattr(trainer.args, "train_sampling_strategy", "random")),
            "num_tokens": history[-1].get("num_tokens") if history else None,
            # TRL's num_tokens counts the tokens this process trained on (not those before a resume)
            "tokens_per_step": (history[-1].get("num_tokens") or 0) / steps_run if history and steps_run > 0 else None,
            "last": last,
            "mean": mean,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_rss_mb_per_rank": rss_per_rank,
            "precision": job.precision,
            "reference": job.reference if job.mode == "dpo" else None,
            # dpo: whether a reference model stayed in memory during training
            "reference_resident": reference_resident if job.mode == "dpo" else None,
        }
        partial = fresh_partial_dir(job.output)
        trained.save_pretrained(partial, state_dict=state_dict)
        tokenizer.save_pretrained(partial)
        with open(os.path.join(partial, "metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(progress._clean(metrics), fh, indent=2, allow_nan=False)
            fh.write("\n")
        publish_dir(partial, job.output)
        leave_process_group()
    except BaseException:
        if me.main:
            remove_partial(job.output)
        raise

    done = {k: metrics[k] for k in ("train_loss", "steps", "steps_run", "resumed_from_step", "runtime_s", "seconds_per_step", "examples")}
    if job.mode == "dpo":
        done["rewards_accuracy"] = last.get("rewards/accuracies")
        done["rewards_margin"] = last.get("rewards/margins")
    progress.emit(
        "done",
        output=job.output,
        elapsed_s=round(time.monotonic() - t_start, 3),
        peak_rss_mb=metrics["peak_rss_mb"],
        **done,
    )
    return 0
