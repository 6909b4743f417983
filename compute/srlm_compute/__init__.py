"""srlm_compute: the tensor work of srlm (Self-Rewarding Language Models).

TypeScript owns orchestration, prompts, parsing, pair selection and storage;
this package only generates text, trains (SFT / DPO with TRL, with resumable
checkpoints), imports packaged GGUF models into Hugging Face checkpoints and
builds a tiny random model for tests.

    PYTHONPATH=compute python -m srlm_compute generate        --job job.json
    PYTHONPATH=compute python -m srlm_compute train           --job job.json
    PYTHONPATH=compute python -m srlm_compute import-model    --job job.json
    PYTHONPATH=compute python -m srlm_compute locate-packaged --job job.json
    PYTHONPATH=compute python -m srlm_compute make-tiny-model --job job.json

stdout carries only JSON lines (see :mod:`srlm_compute.progress`); exit codes
are 0 (success), 2 (invalid input), 1 (other failure), 130/143 (SIGINT/SIGTERM).
Every command dies with the process that spawned it (``PR_SET_PDEATHSIG``) and
writers hold ``<output>.lock`` (see :mod:`srlm_compute.runtime`).
"""

__version__ = "0.1.0"
