"""Entry point of `hf_mllm_msr.scripts.evaluate`: adapters and baselines on the same test candidates.

    python recipes/evaluate.py --config recipes/synthetic/evaluate/config_default.yaml

runs the same main, with the same dataclasses and YAML, as `mllm-msr evaluate --config ...`; the usage, the
flags and the order of the blocks are in `hf_mllm_msr/scripts/evaluate.py`.
"""

from hf_mllm_msr.scripts.evaluate import main, make_parser

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
