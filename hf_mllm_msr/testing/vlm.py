"""Tiny random-weight vision-language models of the real architectures (Gemma3, LLaVA, Idefics3, Qwen2-VL,
MsrVision), built in-process with no download; the text-only ones and the tokenizers are :mod:`hf_mllm_msr.testing.text`.

Every factory returns a saved folder (model + processor), built once per folder.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from .text import (
    CHATML_SPECIALS,
    CHATML_TEMPLATE,
    GEMMA_SPECIALS,
    GEMMA_TEMPLATE,
    is_built,
    tiny_chatml_tokenizer,
    tiny_llama,
    tiny_llama_text_config,
    train_tokenizer,
)


def tiny_vision_kwargs(image_size: int = 32) -> dict:
    """Sizes of every tiny vision tower here: 2 layers, hidden 32, 8 px patches."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
    )


def tiny_gemma3_vlm(path: str | os.PathLike, seed: int = 0, image_size: int = 32) -> str:
    """A 2-layer Gemma3 image-text-to-text model (SigLIP tower) with processor, random weights."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        PreTrainedTokenizerFast,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    path = Path(path)
    if is_built(path):
        return str(path)
    torch.manual_seed(seed)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(GEMMA_SPECIALS),
        pad_token="<pad>",
        eos_token="<end_of_turn>",
        bos_token="<bos>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    tok.chat_template = GEMMA_TEMPLATE
    proc = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size}),
        tokenizer=tok,
        image_seq_length=4,
        chat_template=GEMMA_TEMPLATE,
    )
    ids = tok.convert_tokens_to_ids
    cfg = Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=64,
            pad_token_id=ids("<pad>"),
            eos_token_id=ids("<end_of_turn>"),
            bos_token_id=ids("<bos>"),
        ),
        vision_config=SiglipVisionConfig(**tiny_vision_kwargs(image_size)),
        mm_tokens_per_image=4,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = ids("<pad>")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


def tiny_llava(path: str | os.PathLike, seed: int = 0, image_size: int = 32) -> str:
    """A LLaVA model (2-layer CLIP tower + 2-layer Llama) with a ChatML processor, random weights."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    path = Path(path)
    if is_built(path):
        return str(path)
    torch.manual_seed(seed)
    tok = tiny_chatml_tokenizer()
    ids = tok.convert_tokens_to_ids
    proc = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHATML_TEMPLATE,
    )
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(**tiny_vision_kwargs(image_size)),
        text_config=tiny_llama_text_config(tok, eos_token="<|im_end|>"),
        image_token_id=ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


IDEFICS3_SPECIALS = ["<|endoftext|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:{% if m['content'] is string %}"
    "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def tiny_idefics3(path: str | os.PathLike, seed: int = 0, image_size: int = 32) -> str:
    """An Idefics3 model (2-layer SigLIP-style tower + 2-layer Llama) with its processor, random weights.

    Images are split into ``image_size`` tiles plus a global view (rows/cols tokens), as in the real model.
    """
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
        Idefics3VisionConfig,
        PreTrainedTokenizerFast,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    path = Path(path)
    if is_built(path):
        return str(path)
    torch.manual_seed(seed)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(IDEFICS3_SPECIALS + ["<|im_start|>"]),
        pad_token="<|endoftext|>",
        eos_token="<end_of_utterance>",
        bos_token="<|im_start|>",
    )
    tok.chat_template = IDEFICS3_TEMPLATE
    image_seq_len = (image_size // 8) ** 2 // 4  # patches per tile / scale_factor**2
    proc = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(
            size={"longest_edge": 2 * image_size}, max_image_size={"longest_edge": image_size}
        ),
        tokenizer=tok,
        image_seq_len=image_seq_len,
        chat_template=IDEFICS3_TEMPLATE,
    )
    ids = tok.convert_tokens_to_ids
    cfg = Idefics3Config(
        vision_config=Idefics3VisionConfig(**tiny_vision_kwargs(image_size)),
        text_config=tiny_llama_text_config(tok, eos_token="<end_of_utterance>", bos_token="<|im_start|>"),
        image_token_id=ids("<image>"),
        scale_factor=2,
        pad_token_id=ids("<|endoftext|>"),
    )
    model = Idefics3ForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.eos_token_id = ids("<end_of_utterance>")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


QWEN2VL_SPECIALS = CHATML_SPECIALS[:3] + ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN2VL_TEMPLATE = CHATML_TEMPLATE.replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")


@lru_cache(maxsize=1)
def qwen2vl_processor_class():
    """The Qwen2-VL processor class that works without torchvision (``AutoProcessor`` fails here)."""
    from transformers import Qwen2VLProcessor

    class Qwen2VLProcessorNoVideo(Qwen2VLProcessor):
        """Qwen2VLProcessor without a video processor: video processors need torchvision, which does not
        import beside the CPU torch wheel (stack-notes §2). Load it with ``Qwen2VLProcessorNoVideo.from_pretrained``."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            kwargs.pop("video_processor", None)
            super().__init__(
                image_processor=image_processor,
                tokenizer=tokenizer,
                video_processor=None,
                chat_template=chat_template,
                **kwargs,
            )

    return Qwen2VLProcessorNoVideo


def tiny_qwen2_vl(path: str | os.PathLike, seed: int = 0) -> str:
    """A Qwen2-VL model (2-block vision tower, 2-layer text model, M-RoPE) with a ChatML processor, random weights.

    Load the processor with ``qwen2vl_processor_class().from_pretrained(path)``.
    """
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    path = Path(path)
    if is_built(path):
        return str(path)
    torch.manual_seed(seed)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(QWEN2VL_SPECIALS),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        bos_token=None,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tok.chat_template = QWEN2VL_TEMPLATE
    proc = qwen2vl_processor_class()(
        image_processor=Qwen2VLImageProcessorPil(
            patch_size=8, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 16 * 16, "longest_edge": 48 * 48}
        ),
        tokenizer=tok,
        chat_template=QWEN2VL_TEMPLATE,
    )
    ids = tok.convert_tokens_to_ids
    cfg = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "pad_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "bos_token_id": None,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


def tiny_msr_vision(
    path: str | os.PathLike, lm_dir: str | None = None, seed: int = 0, grid: int = 2, image_size: int = 32
) -> str:
    """The CPU vision-language model's composition (``vision_lm``) with a tiny random CNN and a tiny Llama."""
    from transformers import AutoConfig, AutoTokenizer

    from ..models.vision_lm import (
        MsrVisionConfig,
        MsrVisionForConditionalGeneration,
        MsrVisionProcessor,
        imagenet_image_processor,
    )

    path = Path(path)
    if is_built(path):
        return str(path)
    lm_dir = lm_dir or tiny_llama(path.with_name(path.name + "-lm"), seed=seed)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(lm_dir)
    config = MsrVisionConfig(
        text_config=AutoConfig.from_pretrained(lm_dir).to_dict(),
        vision_encoder="tiny-cnn",
        vision_channels=8,
        image_size=image_size,
        image_grid=grid,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        projector_hidden_size=16,
    )
    model = MsrVisionForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    processor = MsrVisionProcessor(
        image_processor=imagenet_image_processor(image_size),
        tokenizer=tok,
        image_seq_length=grid * grid,
        chat_template=CHATML_TEMPLATE,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)
