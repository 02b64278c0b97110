"""Entry point of `hf_mllm_msr.scripts.sft`: LoRA SFT of the Yes/No recommender (stage 3).

    accelerate launch recipes/sft.py --config recipes/smollm2-135m/sft/config_cpu.yaml

runs the same main, with the same dataclasses and YAML, as `mllm-msr sft --config ...`; the usage, the
flags and the order of the blocks are in `hf_mllm_msr/scripts/sft.py`.
"""

from hf_mllm_msr.scripts.sft import main, make_parser

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
