"""LoRA SFT of the MLLM-MSR Yes/No recommender with TRL (stage 3).

One process on the CPU, with every core (a plain ``accelerate launch`` on a machine without GPUs sets
OMP_NUM_THREADS=1; ``mllm-msr sft ...`` and ``python recipes/sft.py ...`` use every core too):

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/sft.py \
        --config recipes/smollm2-135m/sft/config_cpu.yaml

One GPU: ``accelerate launch recipes/sft.py --config ...``.

Two processes on this CPU-only machine (gloo; checks the distributed path, no speed-up on 2 cores):

    accelerate launch --config_file recipes/accelerate_configs/cpu_2proc.yaml recipes/sft.py \
        --config recipes/smollm2-135m/sft/config_cpu.yaml

GPUs (DDP, FSDP or DeepSpeed ZeRO-2), e.g. the paper's setting on 8 GPUs:

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml --num_processes 8 recipes/sft.py \
        --config recipes/llava-v1.6-mistral-7b/sft/config_paper.yaml

Every YAML key is a field of ``MsrSftArguments`` (dataset, summaries, mode), TRL's ``SFTConfig`` or
TRL's ``ModelConfig``; any key can be overridden on the command line (``--learning_rate 1e-4``).
The blocks run in this order, inside ``hf_mllm_msr.recommendation.training.train_recommender``: seed, logging,
args, data (examples + summaries -> prompt/completion rows), model (+ LoRA), trainer (with the
validation-AUC callback), train (resuming from the last checkpoint in ``output_dir``), save
(adapter, processor, ``recipe.yaml``, ``msr_config.json``).
"""

from __future__ import annotations

import logging
import sys


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments

    return TrlParser((MsrSftArguments, SFTConfig, ModelConfig), prog="mllm-msr sft")


def main(script_args, training_args, model_args) -> str:
    """Trains one adapter; returns its folder (``training_args.output_dir``)."""
    # --- logging ---
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    from hf_mllm_msr.recommendation.training import train_recommender

    # --- seed, data, model, trainer, train, save ---
    output_dir = train_recommender(script_args, training_args, model_args)
    logging.getLogger("sft").info("Adapter, processor and recipe saved to %s", output_dir)
    return output_dir


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
