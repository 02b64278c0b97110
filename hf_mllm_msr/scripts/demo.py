"""The whole method end to end on a laptop CPU with no network (see `hf_mllm_msr.demo`).

mllm-msr demo --output_dir demo_output
"""

from __future__ import annotations


def make_parser():
    from trl import TrlParser

    from hf_mllm_msr.demo_arguments import DemoArguments

    return TrlParser((DemoArguments,), prog="mllm-msr demo")


def main(args) -> dict:
    import logging
    import os

    from hf_mllm_msr.demo import run_demo

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return run_demo(args)
