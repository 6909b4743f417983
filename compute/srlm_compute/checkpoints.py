"""Training checkpoints: atomic publication with a hashed manifest, and verification before resume.

A checkpoint is the directory transformers' ``Trainer`` writes as
``checkpoint-N`` (model weights, config, tokenizer, ``optimizer.pt``,
``scheduler.pt``, ``rng_state.pth``, ``trainer_state.json`` with the global
step, ``training_args.bin``), published as ``<checkpoint_dir>/step-NNNNNN/``
(N as 6 digits) with one more file, written LAST::

    manifest.json: {"kind": "train-checkpoint", "step": N, "mode": "sft" | "dpo",
                    "files": [{"path": "optimizer.pt", "sha256": "<hex>", "bytes": 123}, ...]}

``files`` lists every other file of the directory (paths relative, ``/``
separated, sorted). The directory is assembled as ``step-NNNNNN.partial`` (the
trainer's ``checkpoint-N`` is moved there, or copied when ``checkpoint_dir`` is
on another filesystem), every file is fsynced, the manifest is written and the
directory renamed into place, so ``step-NNNNNN`` either does not exist or is
complete.

:func:`verify` is run on ``resume_from`` before anything is loaded: the manifest
must be present and well-formed, list the files a resume needs, and every
listed file must exist with the listed size and sha256. Any problem is
:class:`~srlm_compute.jobs.InvalidInput` naming the file and the problem (exit
2), so a torn or tampered checkpoint is never loaded. Files not listed in the
manifest are ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable

from .jobs import InvalidInput

MANIFEST = "manifest.json"
KIND = "train-checkpoint"
# What transformers' Trainer needs to resume exactly (weights are checked separately: safetensors or sharded).
REQUIRED_FILES = ("trainer_state.json", "scheduler.pt")
# RNG states: rng_state.pth from one process, rng_state_<rank>.pth from each rank of a distributed run
RNG_FILES = ("rng_state.pth", "rng_state_0.pth")
# Optimizer state: optimizer.pt; under FSDP accelerate writes optimizer.bin (full) or optimizer_0/ (sharded)
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin", "optimizer_0/")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "pytorch_model_fsdp.bin",  # FSDP, full state dict
    "pytorch_model_fsdp_0/",  # FSDP, sharded state dict (a directory)
)


def _lists(listed: set[str], names: tuple[str, ...]) -> bool:
    """Whether the manifest lists one of ``names`` (a name ending in / matches any file under it)."""
    return any(name in listed if not name.endswith("/") else any(p.startswith(name) for p in listed) for name in names)


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def sha256_file(path: str, fsync: bool = False) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file; optionally fsync it while it is open."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
            size += len(chunk)
        if fsync:
            os.fsync(fh.fileno())
    return h.hexdigest(), size


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _list_files(root: str) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def clean_partials(checkpoint_dir: str) -> None:
    """Remove ``step-*.partial`` leftovers of killed runs (the caller holds the output lock)."""
    if not os.path.isdir(checkpoint_dir):
        return
    for name in os.listdir(checkpoint_dir):
        if name.startswith("step-") and name.endswith(".partial"):
            shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)


def publish(trainer_checkpoint: str, checkpoint_dir: str, step: int, mode: str) -> str:
    """Move the trainer's ``checkpoint-N`` to ``<checkpoint_dir>/step-NNNNNN`` with a manifest; returns its path."""
    from .runtime import publish_dir

    os.makedirs(checkpoint_dir, exist_ok=True)
    final = os.path.join(os.path.abspath(checkpoint_dir), step_dir_name(step))
    partial = final + ".partial"
    if os.path.lexists(partial):
        shutil.rmtree(partial) if os.path.isdir(partial) else os.remove(partial)
    try:
        os.rename(trainer_checkpoint, partial)
    except OSError:  # another filesystem (EXDEV) or similar: copy, then drop the trainer's copy
        shutil.copytree(trainer_checkpoint, partial)
        shutil.rmtree(trainer_checkpoint, ignore_errors=True)
    files = []
    for rel in _list_files(partial):
        if rel == MANIFEST:
            os.remove(os.path.join(partial, rel))
            continue
        digest, size = sha256_file(os.path.join(partial, rel), fsync=True)
        files.append({"path": rel, "sha256": digest, "bytes": size})
    manifest = {"kind": KIND, "step": step, "mode": mode, "files": files}
    with open(os.path.join(partial, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(partial)
    publish_dir(partial, final)
    _fsync_dir(os.path.dirname(final))
    return final


def verify(path: str, mode: str | None = None) -> dict[str, Any]:
    """Check a checkpoint directory against its manifest; returns the manifest. Raises InvalidInput."""
    where = os.path.join(path, MANIFEST)
    if not os.path.isfile(where):
        raise InvalidInput(f"{where}: checkpoint manifest missing (incomplete or not a train checkpoint)")
    try:
        with open(where, "r", encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{where}: unreadable checkpoint manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise InvalidInput(f'{where}: not a train-checkpoint manifest ("kind" must be {KIND!r})')
    step = manifest.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
        raise InvalidInput(f"{where}: key 'step' must be a positive integer, got {json.dumps(step)}")
    if mode is not None and manifest.get("mode") != mode:
        raise InvalidInput(f"{where}: checkpoint was written by a {manifest.get('mode')!r} job; this job's mode is {mode!r}")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise InvalidInput(f"{where}: key 'files' must be a non-empty array")
    listed: set[str] = set()
    root = os.path.realpath(path)
    for i, entry in enumerate(files):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("path"), str)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("bytes"), int)
        ):
            raise InvalidInput(f'{where}: files[{i}] must be {{"path": str, "sha256": str, "bytes": int}}')
        rel = entry["path"]
        full = os.path.realpath(os.path.join(path, rel))
        if os.path.isabs(rel) or not full.startswith(root + os.sep):
            raise InvalidInput(f"{where}: files[{i}]: path {rel!r} leaves the checkpoint directory")
        listed.add(rel)
    missing = [name for name in REQUIRED_FILES if name not in listed]
    if not _lists(listed, OPTIMIZER_FILES):
        missing.insert(0, "optimizer.pt")
    if not _lists(listed, RNG_FILES):
        missing.append("rng_state.pth")
    if missing or not _lists(listed, WEIGHT_FILES):
        what = missing[0] if missing else "model weights (model.safetensors)"
        raise InvalidInput(f"{where}: not a full checkpoint: the manifest does not list {what}")
    for entry in files:
        full = os.path.join(path, entry["path"])
        if not os.path.isfile(full):
            raise InvalidInput(f"{full}: checkpoint file missing (listed in {MANIFEST})")
        size = os.path.getsize(full)
        if size != entry["bytes"]:
            raise InvalidInput(f"{full}: checkpoint file has {size} bytes, the manifest says {entry['bytes']}")
        digest, _ = sha256_file(full)
        if digest != entry["sha256"]:
            raise InvalidInput(f"{full}: checkpoint file sha256 mismatch (corrupt or modified)")
    try:
        with open(os.path.join(path, "trainer_state.json"), "r", encoding="utf-8") as fh:
            state_step = json.load(fh).get("global_step")
    except (OSError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"{os.path.join(path, 'trainer_state.json')}: unreadable: {exc}") from None
    if state_step != step:
        raise InvalidInput(f"{os.path.join(path, 'trainer_state.json')}: global_step {state_step} differs from the manifest's step {step}")
    return manifest


def make_callback(
    checkpoint_every: int,
    checkpoint_dir: str,
    mode: str,
    on_published: Callable[[int, str], None],
    world_size: int = 1,
):
    """A TrainerCallback that decides when the Trainer saves and publishes each save as ``step-NNNNNN``.

    The Trainer runs with ``save_strategy="steps"``; this callback (which runs after
    transformers' DefaultFlowCallback) sets ``should_save`` exactly on multiples of
    ``checkpoint_every`` below the last step (the final model is published as the
    job's output right after the last step, so a checkpoint there would be wasted).

    Distributed (``world_size`` > 1): every rank runs the callback; the Trainer writes the
    weights, optimizer and scheduler from rank 0 and ``rng_state_<rank>.pth`` from every rank
    into the same ``checkpoint-N``, so all ranks meet at a barrier before rank 0 publishes it
    (with every rank's RNG state). This assumes ``<output>.partial`` is one directory for all
    ranks (one node, or a shared filesystem); on other nodes each rank's RNG file stays behind
    and a resume there starts their RNGs afresh (the Trainer warns).
    """
    from transformers import TrainerCallback

    class PublishCheckpoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            control.should_save = step % checkpoint_every == 0 and step < state.max_steps
            return control

        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            if world_size > 1:
                from .runtime import barrier

                barrier()  # every rank has written its part of checkpoint-N
                if not state.is_world_process_zero:
                    return control
            src = os.path.join(args.output_dir, f"checkpoint-{step}")
            if not os.path.isdir(src):
                raise RuntimeError(f"the trainer reported a save at step {step} but {src} does not exist")
            final = publish(src, checkpoint_dir, step, mode)
            on_published(step, final)
            return control

    return PublishCheckpoints()
