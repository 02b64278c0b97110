"""Entry point of `hf_mllm_msr.scripts.align`: align the CPU vision-language model's projector on item images.

    python recipes/align_vision.py --config recipes/smollm2-135m-vision/align/config.yaml

runs the same main, with the same dataclasses and YAML, as `mllm-msr align --config ...`; the usage, the
flags and the order of the blocks are in `hf_mllm_msr/scripts/align.py`.
"""

from hf_mllm_msr.scripts.align import main, make_parser

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
