"""Assemble the CPU vision-language model from offline weights.

`build_msr_vision_model` puts EfficientNet-Lite0 (ImageNet) and SmolLM2-135M-Instruct together with a random
projector, once, into a local folder; `vision_align.align_projector` then trains the projector.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from .vision_lm import (
    EFFICIENTNET,
    IMAGE_TOKEN,
    MsrVisionConfig,
    MsrVisionForConditionalGeneration,
    MsrVisionProcessor,
    imagenet_image_processor,
)

logger = logging.getLogger(__name__)

# SmolLM2's own ChatML template (and default system turn), extended to render {"type": "image"} as <image>
# and to mark the assistant turn with {% generation %} (TRL's assistant_only_loss reads the markers).
SMOLLM2_VISION_TEMPLATE = (
    "{% macro render(content) %}{% if content is string %}{{ content }}{% else %}{% for c in content %}"
    "{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endmacro %}"
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n{% generation %}"
    "{{ render(m['content']) }}<|im_end|>{% endgeneration %}\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ render(m['content']) }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def atomic_save(save, output_dir: Path) -> None:
    """Writes through `save(tmp_dir)` into a temporary sibling folder and renames it into place."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        save(tmp)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_msr_vision_model(
    output_dir: str | os.PathLike | None = None,
    *,
    grid: int = 3,
    colour_bins: int = 0,
    projector_hidden_size: int = 1024,
    seed: int = 0,
) -> str:
    """Assembles EfficientNet-Lite0 + random projector + SmolLM2-135M-Instruct into a transformers folder.

    Everything comes from locally installed packages (see `models.offline`); nothing is downloaded. Done once:
    an existing complete folder is returned as is. The folder loads with `AutoModelForImageTextToText` and
    `AutoProcessor` after `import hf_mllm_msr`.

    Args:
        output_dir: target folder; defaults to `<cache_root>/models/msr-vision-smollm2-135m-g<grid>[-c<colour_bins>]`.
        grid: the encoder's 7x7 feature map is pooled to `grid x grid` image tokens per image.
        colour_bins: each cell also gets a colour histogram of `colour_bins**3` RGB bins (0: none).
        projector_hidden_size: hidden width of the MLP projector.
        seed: seed of the projector's random initialization.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .offline import cache_root, load_efficientnet_lite0, smollm2_path

    name = f"msr-vision-smollm2-135m-g{grid}" + (f"-c{colour_bins}" if colour_bins else "")
    output_dir = Path(output_dir or cache_root() / "models" / name)
    if (output_dir / "model.safetensors").exists():
        return str(output_dir)
    start = time.perf_counter()
    lm_dir = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    lm = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    # The new <image> row is never read (image embeddings replace it) but the vocabulary must hold its id.
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    torch.manual_seed(seed)
    config = MsrVisionConfig(
        text_config=lm.config.to_dict(),
        vision_encoder=EFFICIENTNET,
        vision_channels=1280,
        image_size=224,
        image_grid=grid,
        colour_bins=colour_bins,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_size=projector_hidden_size,
    )
    model = MsrVisionForConditionalGeneration(config)
    model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.vision_tower.load_state_dict(load_efficientnet_lite0().state_dict())
    model.generation_config = lm.generation_config
    processor = MsrVisionProcessor(
        image_processor=imagenet_image_processor(224),
        tokenizer=tokenizer,
        image_seq_length=config.image_seq_length,
        chat_template=SMOLLM2_VISION_TEMPLATE,
    )

    def save(folder):
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    atomic_save(save, output_dir)
    logger.info("Built %s in %.1f s", output_dir, time.perf_counter() - start)
    return str(output_dir)
