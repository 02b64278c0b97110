"""The `mllm-msr` command: `demo` runs the whole method end to end, `push` uploads an adapter.

Each sub-command parses its own flags (so `mllm-msr demo --help` lists the demo's options) and calls
a library function; heavy imports happen inside those functions so `--help` is instant.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "demo": ("hf_mllm_msr.demo", "main", "run the whole method end to end on the embedded synthetic data"),
    "push": ("hf_mllm_msr.publishing.hub", "push_main", "upload an adapter folder (+ card, + summaries) to the Hub"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<8} {help_}" for name, (_, _, help_) in COMMANDS.items()]
        print("usage: mllm-msr {" + ",".join(COMMANDS) + "} [options]\n\ncommands:\n" + "\n".join(lines))
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    import importlib

    module_name, function_name, _ = COMMANDS[argv[0]]
    getattr(importlib.import_module(module_name), function_name)(argv[1:])
