"""The options of `mllm-msr demo`, and how they map onto the library's protocol and SFT configurations (the same
three configurations `recipes/sft.py` reads from its YAML files)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .models.offline import VISION_MODEL_NAME

VISION_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
# The report row of the text adapter says what it was shown of each candidate (`--candidate_text`)
CANDIDATE_TEXT_LABELS = {
    "summary_and_cues": "item summaries + image cues",
    "summary": "item summaries",
    "cues": "image cues",
    "colours": "image colours",
}


def adapter_row_name(candidate_text: str) -> str:
    """The report row of the demo's MLLM-MSR text adapter, e.g. "MLLM-MSR (user summaries + image colours)"."""
    return f"MLLM-MSR (user summaries + {CANDIDATE_TEXT_LABELS[candidate_text]})"


@dataclass
class DemoArguments:
    """Options of `mllm-msr demo` (also accepted as YAML keys with `--config`)."""

    output_dir: str = field(default="demo_output", metadata={"help": "Where every stage writes its folder."})
    data: str = field(default="synthetic", metadata={"help": "Builder name (synthetic, movielens, ...) or folder."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files of the dataset (not for synthetic)."})
    num_users: int = field(default=36, metadata={"help": "Synthetic only: number of users."})
    num_items: int = field(default=48, metadata={"help": "Synthetic only: number of items."})
    max_users: int | None = field(
        default=36, metadata={"help": "Real data: keep this many users (sorted ids); None = all (hours on a CPU)."}
    )
    max_history: int = field(default=6, metadata={"help": "Items of history given to the models."})
    dataset_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "More load_msr_dataset options as a dict/JSON (e.g. num_test_negatives, min_user_interactions)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the split, the negatives and training."})
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "Summarizer and recommender base model (a short offline name, Hub id or folder)."},
    )
    recommender_model: str | None = field(
        default=None,
        metadata={
            "help": "Base of the MLLM-MSR recommender. None: --model, text-only (it reads the candidate's item "
            "summary + image cues). 'smollm2-135m-vision': EfficientNet-Lite0 -> projector -> SmolLM2, which "
            "sees the candidate image, built here with an unaligned projector that trains fully in SFT; or any "
            "image-text-to-text folder, e.g. the one recipes/align_vision.py writes (the vision recipe's model), whose "
            "projector stays frozen (LoRA on the LM only)."
        },
    )
    tiny: bool = field(default=False, metadata={"help": "Use a tiny random model (tests; numbers are meaningless)."})
    summary_max_new_tokens: int = field(default=48, metadata={"help": "New tokens per item/user summary step."})
    summary_batch_size: int = field(default=16, metadata={"help": "Prompts per generate() call."})
    block_size: int = field(default=3, metadata={"help": "Items per recurrent user-summary step (paper: 3)."})
    history_items: str = field(
        default="title_colours",
        metadata={
            "help": "History items in user prompts: 'title_colours' (title + image colours; SmolLM2-135M keeps "
            "the colour) or 'summary' (the paper: title + item summary)."
        },
    )
    summary_backend: str = field(
        default="auto",
        metadata={
            "help": "'transformers', 'xllamacpp' (GGUF via llama.cpp, ~5x faster on CPU) or 'auto' "
            "(xllamacpp when installed and the model is the offline SmolLM2)."
        },
    )
    num_train_negatives: int = field(
        default=20, metadata={"help": "Stored negatives per train user; packed SFT trains on all of them."}
    )
    packing_mode: str = field(
        default="shared_prefix",
        metadata={"help": "'shared_prefix': one sequence per user with all their candidates; 'none': a row each."},
    )
    answer_loss: str = field(default="both", metadata={"help": "'pointwise', 'listwise' or 'both' (packed SFT)."})
    candidate_text: str = field(
        default="colours",  # SmolLM2-135M: demo test AUC 0.690 vs 0.542 with summary_and_cues (recipes/demo/README.md)
        metadata={
            "help": "What the text recommender shows of a candidate: 'summary_and_cues', 'summary', 'cues' or 'colours'."
        },
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "SFT epochs over the train examples."})
    train_batch_size: int = field(
        default=1, metadata={"help": "SFT batch size: users with packing_mode shared_prefix, else rows."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "SFT learning rate (LoRA on a 135M model)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (paper: 16)."})
    max_user_tokens: int = field(
        default=128,
        metadata={"help": "User summaries are cut to this many tokens (from their start) for the recommender."},
    )
    baselines: list[str] = field(
        default_factory=lambda: ["popularity", "sasrec", "gru4rec"],
        metadata={"help": "ID-based baselines scored on the same candidates."},
    )
    ablation: bool = field(default=True, metadata={"help": "Also train the title-only (no image) recommender."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples for confidence intervals."})

    def __post_init__(self):
        if self.candidate_text not in CANDIDATE_TEXT_LABELS:  # fail before any stage runs, not at the SFT stage
            raise ValueError(
                f"--candidate_text must be one of {sorted(CANDIDATE_TEXT_LABELS)}, got {self.candidate_text!r}."
            )


def dataset_options(args: DemoArguments) -> dict:
    """The protocol options of `load_msr_dataset` for the demo: leave-one-out, plus `--dataset_options`."""
    options = {
        "split": "leave_one_out",
        "max_history": args.max_history,
        "num_train_negatives": args.num_train_negatives,
        "seed": args.seed,
    }
    if args.data == "synthetic":
        options.update(num_users=args.num_users, num_items=args.num_items)
    extra = args.dataset_options
    options.update(json.loads(extra) if isinstance(extra, str) else dict(extra or {}))
    return options


def summary_backend(args: DemoArguments) -> str:
    """`--summary_backend auto`: llama.cpp for the real SmolLM2 when xllamacpp is installed, else transformers."""
    if args.summary_backend != "auto":
        return args.summary_backend
    import importlib.util

    from .models.offline import SMOLLM2_NAME

    fast = not args.tiny and args.model in (SMOLLM2_NAME, "smollm2") and importlib.util.find_spec("xllamacpp")
    return "xllamacpp" if fast else "transformers"


def sft_arguments(args: DemoArguments, model_path: str, mode: str, output: Path, protocol: dict) -> tuple:
    """(MsrSftArguments, SFTConfig, ModelConfig) for one demo adapter, sized for 2 CPU cores."""
    from trl import ModelConfig, SFTConfig

    from .recommendation.sft_arguments import MsrSftArguments

    script_args = MsrSftArguments(
        dataset_name=args.data,
        mode=mode,
        data_dir=args.data_dir,
        dataset_options=protocol,
        max_eval_users=8,
        max_user_tokens=args.max_user_tokens,
        packing_mode=args.packing_mode,
        answer_loss=args.answer_loss,
        candidate_text=args.candidate_text,
    )
    training_args = SFTConfig(
        output_dir=str(output),
        bf16=False,
        use_cpu=True,
        report_to="none",
        gradient_checkpointing=False,
        max_length=4096 if args.packing_mode == "shared_prefix" else None,
        per_device_train_batch_size=args.train_batch_size,
        num_train_epochs=args.num_train_epochs,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        logging_steps=5,
        save_strategy="steps",
        save_steps=25,
        save_total_limit=1,
        seed=args.seed,
        disable_tqdm=False,
    )
    model_args = ModelConfig(
        model_name_or_path=model_path,
        use_peft=True,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.0,
        dtype="float32",
    )
    if mode == "image":  # as recipes/smollm2-135m-vision/sft/config_cpu.yaml: the frozen encoder is never adapted
        model_args.lora_target_modules = [VISION_LORA_TARGETS]
        if args.tiny or args.recommender_model == VISION_MODEL_NAME:
            # built here with a random projector, which must learn; an aligned (or pretrained) one stays as it is,
            # since SFT on the Yes/No answer made the aligned projector forget its colour words (README)
            model_args.lora_modules_to_save = ["multi_modal_projector"]
    return script_args, training_args, model_args
