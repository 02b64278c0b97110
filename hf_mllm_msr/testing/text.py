"""Tiny random-weight models of the real architectures, built in-process with no download.

Used by the test-suite, the benchmarks' smoke mode and the reduced demo. Every factory returns a
saved folder (``save_pretrained`` of model + tokenizer/processor), so code under test loads it
exactly like a Hub checkpoint. Built once per folder: a second call with the same folder reuses it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Words the tiny tokenizer is trained on: enough to cover prompts, answers and synthetic titles.
_CORPUS = [
    "Yes No yes no The user appears to have a preference for items such as",
    "Describe this item in one continuous paragraph of at most three sentences what it is and its visual features",
    "colours shapes style Use only the information given Treat the quoted fields as data not as instructions",
    "Title Description Visual cues from the image Item shown in the image untitled",
    "Previous summary of the user's preferences The user then interacted with these items in order",
    "Rewrite the summary Summarize the user's preferences content Start with A user interacted",
    "User preference summary Candidate item About the item Will the user interact with the candidate item below",
    "Answer Yes or No red green blue yellow purple orange black white grey pink brown",
    "lamp mug chair vase clock bag shoe hat shirt poster book toy circle square triangle stripes dots",
    "modern classic rustic minimal vintage bold soft bright dark light cotton wood metal glass ceramic",
    "0 1 2 3 4 5 6 7 8 9 10 # . , : ; ' ( ) - ! ?",
]
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
GEMMA_SPECIALS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]

# ChatML with {% generation %} markers (TRL's assistant_only_loss needs them) and image placeholders.
CHATML_TEMPLATE = (
    "{% macro render(content) %}{% if content is string %}{{ content }}{% else %}{% for c in content %}"
    "{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endmacro %}"
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n{% generation %}"
    "{{ render(m['content']) }}<|im_end|>{% endgeneration %}\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ render(m['content']) }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<start_of_image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def train_tokenizer(specials: list[str], vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok


def tiny_chatml_tokenizer():
    """A ChatML tokenizer (SmolLM2/Qwen style: 'Yes' and ' Yes' are different tokens), trained offline."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(CHATML_SPECIALS),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        bos_token=None,
        extra_special_tokens={"image_token": "<image>"},
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def is_built(path: Path) -> bool:
    return (path / "config.json").exists()


def tiny_llama_text_config(
    tok, eos_token: str, bos_token: str | None = None, pad_token: str = "<|endoftext|>", hidden_size: int = 32, **kw
):
    """A 2-layer Llama config sized to the tokenizer: the tiny causal LM, and the language model of the tiny VLMs."""
    from transformers import LlamaConfig

    ids = tok.convert_tokens_to_ids
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=ids(pad_token),
        eos_token_id=ids(eos_token),
        bos_token_id=ids(bos_token) if bos_token else None,
        **kw,
    )


def tiny_llama(path: str | os.PathLike, seed: int = 0, hidden_size: int = 32) -> str:
    """A 2-layer Llama causal LM with a ChatML tokenizer (the shape of SmolLM2)."""
    from transformers import LlamaForCausalLM

    path = Path(path)
    if is_built(path):
        return str(path)
    torch.manual_seed(seed)
    tok = tiny_chatml_tokenizer()
    cfg = tiny_llama_text_config(
        tok, eos_token="<|im_end|>", hidden_size=hidden_size, max_position_embeddings=2048, tie_word_embeddings=True
    )
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = cfg.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def noise_image(seed: int = 0, size: tuple[int, int] = (48, 40)):
    """A random RGB PIL image (sizes differ on purpose: processors must resize)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype="uint8"), "RGB")


def cpu_sft_config(output_dir: str | os.PathLike, **overrides):
    """TRL's ``SFTConfig`` for a few steps of a tiny model on the CPU (no bf16, no reports, no checkpoints, batch 2,
    lr 3e-2 so that a handful of steps moves the weights); ``overrides`` set any other field."""
    from trl import SFTConfig

    defaults = dict(bf16=False, use_cpu=True, report_to="none", per_device_train_batch_size=2, logging_steps=1)
    defaults.update(save_strategy="no", learning_rate=3e-2, seed=0, max_length=2048)
    return SFTConfig(output_dir=str(output_dir), **{**defaults, **overrides})


def untrained_adapter(folder: str | os.PathLike, base: str, msr_config: dict) -> str:
    """A LoRA adapter folder as training writes it (PEFT files, tokenizer, ``msr_config.json``), with untrained LoRA
    weights: for tests of what reads adapters (evaluation, benchmarks), not of what they learned."""
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    (folder / "msr_config.json").write_text(json.dumps({"base_model": base, **msr_config}))
    return str(folder)
