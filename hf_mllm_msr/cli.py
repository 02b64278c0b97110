"""The `mllm-msr` command: one sub-command per stage, each running the same `main` as `recipes/<stage>.py`.

    mllm-msr summarize | sft | evaluate | align | demo | push  [--config recipe.yaml] [--flag value ...]

Each sub-command parses the stage's own dataclasses (so `mllm-msr sft --help` lists the SFT options and every
flag is also a YAML key of `--config`) with `hf_mllm_msr.scripts.<stage>.make_parser`, then calls
`hf_mllm_msr.scripts.<stage>.main`; the stage module is imported only then, so `mllm-msr --help` is instant.
"""

from __future__ import annotations

import importlib
import sys

from .scripts import STAGES


def run_stage(stage: str, argv: list[str] | None = None):
    """Parses `argv` (flags and `--config`) for `stage` and runs its main; returns what the main returns."""
    module = importlib.import_module(f"hf_mllm_msr.scripts.{stage}")
    return module.main(*module.make_parser().parse_args_and_config(args=argv))


def main(argv: list[str] | None = None):
    """Runs `mllm-msr <stage> ...`; returns the stage main's result when given `argv` (from Python). As the command
    (no `argv`) it returns None: the console script hands the return value to `sys.exit`, where a results dict or an
    output path would print itself and exit with status 1."""
    command_line = argv is None
    argv = sys.argv[1:] if command_line else argv
    if not argv or argv[0] not in STAGES:
        lines = [f"  {name:<10} {help_}" for name, help_ in STAGES.items()]
        print("usage: mllm-msr {" + ",".join(STAGES) + "} [--config YAML] [options]\n\nstages:\n" + "\n".join(lines))
        print("\n`mllm-msr <stage> --help` lists a stage's options.")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    result = run_stage(argv[0], argv[1:])
    return None if command_line else result
