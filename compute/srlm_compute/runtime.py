"""Shared runtime helpers: environment defaults, library quieting, device and threads."""

from __future__ import annotations

import logging
import os
import warnings

# Never reach a model hub at run time; every model is a local directory.
ENV_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TQDM_DISABLE": "1",
    # OpenMP worker threads sleep instead of spinning at barriers. On a small box shared with the
    # orchestrator (2 cores here), spinning threads made torch ops up to 5x slower whenever another
    # process held a core; passive waiting costs a few percent when the machine is idle.
    "OMP_WAIT_POLICY": "PASSIVE",
}


def apply_env_defaults() -> None:
    """Set offline/quiet environment defaults; must run before transformers is imported."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    """Silence progress bars and most warnings of transformers / datasets / TRL (they go to stderr anyway)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass
    for name in ("trl", "accelerate", "torch.distributed", "gguf"):
        logging.getLogger(name).setLevel(logging.ERROR)


def resolve_device(device: str) -> str:
    """Map the job's ``device`` ("auto" | "cpu" | "cuda") to a torch device string."""
    import torch

    from .jobs import InvalidInput

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device \"cuda\" requested but CUDA is not available")
    return device


def set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fresh_partial_dir(output: str) -> str:
    """Return ``output + ".partial"``, emptied of any leftover from a killed run."""
    import shutil

    partial = output.rstrip("/\\") + ".partial"
    if os.path.isdir(partial):
        shutil.rmtree(partial)
    elif os.path.exists(partial):
        os.remove(partial)
    os.makedirs(partial)
    return partial


def publish_dir(partial: str, output: str) -> None:
    """Atomically move a finished ``.partial`` directory into place (replacing ``output`` if present)."""
    import shutil

    output = output.rstrip("/\\")
    if os.path.exists(output):
        old = output + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        os.rename(output, old)
        os.rename(partial, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, output)


def remove_partial(output: str) -> None:
    import shutil

    partial = output.rstrip("/\\") + ".partial"
    if os.path.isdir(partial):
        shutil.rmtree(partial, ignore_errors=True)
