"""Entry point of `hf_mllm_msr.scripts.summarize`: item summaries, then recurrent user summaries (stages 1-2).

    python recipes/summarize.py --config recipes/smollm2-135m/summarize/config_cpu.yaml

runs the same main, with the same dataclasses and YAML, as `mllm-msr summarize --config ...`; the usage, the
flags and the order of the blocks are in `hf_mllm_msr/scripts/summarize.py`.
"""

from hf_mllm_msr.scripts.summarize import main, make_parser

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
