"""Where a training step's system time goes: glibc's allocator, one row per candidate (TRL) and packed.

TRL's one-row-per-candidate path computes the 49k-wide vocabulary logits at every position of every row: hundreds of
megabytes per tensor, each step. glibc serves such blocks with fresh ``mmap`` pages and returns them on ``free``, so
every step faults them in again (the kernel zeroes each page). glibc's tunables keep freed memory in the process
instead; they are read at process start, so each measurement here is a fresh process:

- ``default``: glibc as it comes;
- ``kept``: ``MALLOC_MMAP_THRESHOLD_`` (4 GiB: big blocks come from the heap), ``MALLOC_TRIM_THRESHOLD_`` (64 GiB: the
  heap is never trimmed) and ``MALLOC_TOP_PAD_`` (1 GiB: it grows in big steps).

Both training paths of ``benchmarks/bench_sft.py`` (its long regime: SmolLM2-length summaries), on the same rows, one epoch.
Printed per run: seconds per step after the first, minor page faults and system seconds per later step. A
diagnostic, not in ``make bench``. The last line is ``ratio=<one row per candidate: default / kept seconds per later
step>``.

    python experiments/probe_allocator.py [--num_users 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

KEPT = {
    "MALLOC_MMAP_THRESHOLD_": str(4 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 30),
    "MALLOC_TOP_PAD_": str(1 << 30),
}
PATHS = {"none": "one row per candidate", "shared_prefix": "packed"}


def measure(packing_mode: str, num_users: int, threads: int) -> dict:
    """One training run in this process: seconds per later step and the allocator's cost (bench_sft.train_seconds)."""
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
    from bench_sft import PROTOCOL, summaries, train_seconds  # the benchmark's two paths, measured here

    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.data.users import first_users
    from hf_mllm_msr.models.offline import smollm2_path

    torch.set_num_threads(threads)
    items = load_msr_dataset("synthetic", "items", **PROTOCOL)
    train = first_users(load_msr_dataset("synthetic", "examples", **PROTOCOL)["train"], num_users)
    item_summaries, user_summaries = summaries(items, train, "long")
    return train_seconds(packing_mode, smollm2_path(), items, {"train": train}, item_summaries, user_summaries)[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_users", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=list(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.num_users < 2:
        parser.error(
            "--num_users must be at least 2: the packed path trains one user per step, and later steps are timed"
        )
    if args.child:
        print("RESULT " + json.dumps(measure(args.child, args.num_users, args.threads)), flush=True)
        return

    base = {k: v for k, v in os.environ.items() if k not in KEPT}
    results = {}
    for packing_mode, name in PATHS.items():
        for allocator, env in (("default", base), ("kept", {**base, **KEPT})):
            command = [sys.executable, __file__, "--child", packing_mode, "--num_users", str(args.num_users)]
            output = subprocess.run(
                command + ["--threads", str(args.threads)], env=env, capture_output=True, text=True, check=True
            ).stdout
            result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
            results[packing_mode, allocator] = result
            print(
                f"{name}, glibc {allocator}: {result['later_step']:.2f} s per later step, "
                f"{result['later_faults']:.0f} minor page faults and {result['later_system']:.2f} s system time each "
                f"(first step {result['first_faults']} faults, {result['first_system']:.1f} s)",
                flush=True,
            )
    unpacked = results["none", "default"]["later_step"] / results["none", "kept"]["later_step"]
    packed = results["shared_prefix", "default"]["later_step"] / results["shared_prefix", "kept"]["later_step"]
    print(f"kept freed memory: one row per candidate {unpacked:.2f}x, packed {packed:.2f}x per later step")
    print(f"ratio={unpacked:.2f}")


if __name__ == "__main__":
    main()
