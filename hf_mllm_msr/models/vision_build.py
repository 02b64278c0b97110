"""Assemble the CPU vision-language model from offline weights, and align its projector with no caption data.

`build_msr_vision_model` puts EfficientNet-Lite0 (ImageNet) and SmolLM2-135M-Instruct together with a random
projector, once, into a local folder. `align_projector` then trains the projector alone (encoder and LM frozen)
to state what the toolkit can compute for any image on its own: the classifier's top ImageNet label and the
dominant colour names ("An image of a comic book, mostly red and white."). No external captions are needed.
"""

from __future__ import annotations

import logging
import math
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
ALIGN_PROMPT = "What does this image show? Answer in one sentence."


def dominant_colors(image, top_k: int = 2, min_share: float = 0.1) -> list[str]:
    """Names of the main colours of `image` (a PIL image), most frequent first, then its background colour.

    Uses the textualizer's colour naming (`hf_mllm_msr.textualize.colour_shares`), so the projector learns to state
    the same facts the text-only path writes into its cues. Colours covering less than `min_share` of the
    foreground are left out (the first one is always kept).
    """
    from ..data.images import colour_shares

    shares, background = colour_shares(image)
    names = [name for j, (name, share) in enumerate(shares.items()) if j == 0 or share >= min_share][:top_k]
    if background and background not in names and len(names) < top_k:
        names.append(background)
    return names


def visual_facts(label: str | None, colours: list[str]) -> str:
    """The alignment target sentence, e.g. "An image of a comic book, mostly red and white."."""
    subject = f"An image of {'an' if label and label[0].lower() in 'aeiou' else 'a'} {label}" if label else "An image"
    return f"{subject}, mostly {' and '.join(colours)}." if colours else f"{subject}."


def _atomic_save(save, output_dir: Path) -> None:
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
    output_dir: str | os.PathLike | None = None, *, grid: int = 3, projector_hidden_size: int = 1024, seed: int = 0
) -> str:
    """Assembles EfficientNet-Lite0 + random projector + SmolLM2-135M-Instruct into a transformers folder.

    Everything comes from locally installed packages (see `models.offline`); nothing is downloaded. Done once:
    an existing complete folder is returned as is. The folder loads with `AutoModelForImageTextToText` and
    `AutoProcessor` after `import hf_mllm_msr`.

    Args:
        output_dir: target folder; defaults to `<cache_root>/models/msr-vision-smollm2-135m-g<grid>`.
        grid: the encoder's 7x7 feature map is pooled to `grid x grid` image tokens per image.
        projector_hidden_size: hidden width of the MLP projector.
        seed: seed of the projector's random initialization.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .offline import cache_root, load_efficientnet_lite0, smollm2_path

    output_dir = Path(output_dir or cache_root() / "models" / f"msr-vision-smollm2-135m-g{grid}")
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

    _atomic_save(save, output_dir)
    logger.info("Built %s in %.1f s", output_dir, time.perf_counter() - start)
    return str(output_dir)


def _image_facts(model, processor, images, batch_size: int = 16):
    """Pooled encoder cells for all images + one target sentence per image (top-1 label and colours)."""
    from .offline import imagenet_labels

    cells, sentences = [], []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        pixel_values = processor.image_processor(chunk, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            features = model.vision_tower.extract_features(pixel_values)
            cells.append(torch.nn.functional.adaptive_avg_pool2d(features, model.config.image_grid).flatten(2).mT)
            labels = [None] * len(chunk)
            if model.config.vision_encoder == EFFICIENTNET:  # the tiny test CNN has no classifier
                top = model.vision_tower._fc(features.mean((2, 3))).argmax(-1).tolist()
                labels = [imagenet_labels()[t] for t in top]
        sentences += [visual_facts(label, dominant_colors(img)) for label, img in zip(labels, chunk)]
    return torch.cat(cells), sentences


def _tokenize_targets(processor, sentences):
    """input_ids and labels (loss on the answer and end of turn only) for each alignment example."""
    tokenizer = processor.tokenizer
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ALIGN_PROMPT}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = prompt.replace(processor.image_token, processor.image_token * processor.image_seq_length)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    rows = []
    for sentence in sentences:
        answer_ids = tokenizer(sentence + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    return rows


def _batch_loss(model, rows, cells, pad_id):
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    embeds = model.get_input_embeddings()(input_ids)
    embeds = model.model.merge_image_embeddings(input_ids, embeds, model.multi_modal_projector(cells))
    return model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss


def align_projector(
    model_dir: str,
    images,
    *,
    steps: int = 100,
    lr: float = 1e-3,
    batch_size: int = 8,
    output_dir: str | os.PathLike,
    seed: int = 0,
    eval_fraction: float = 0.1,
) -> dict:
    """Trains only the projector so the model states each image's top ImageNet label and dominant colours.

    Encoder and LM stay frozen; encoder cells are computed once up front. A held-out `eval_fraction` of the
    images measures the loss before and after training.

    Args:
        model_dir: folder of a built model (`build_msr_vision_model`).
        images: PIL images (e.g. the dataset's item images).
        steps: optimizer steps of `batch_size` examples.
        lr: AdamW learning rate.
        output_dir: where the aligned model + processor are written (atomically).
        seed: seed of the data order.
        eval_fraction: share of the images held out for the before/after loss.

    Returns:
        dict with `train_loss_before/after` (on up to 32 training examples), `eval_loss_before/after`, `seconds`, `examples`, `output_dir`.
    """
    from transformers import AutoProcessor

    if len(images) < 2:
        raise ValueError(f"align_projector needs at least 2 images, got {len(images)}.")
    start = time.perf_counter()
    model = MsrVisionForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(model_dir)
    model.requires_grad_(False)
    model.multi_modal_projector.requires_grad_(True)
    cells, sentences = _image_facts(model, processor, list(images))
    rows = _tokenize_targets(processor, sentences)
    n_eval = max(1, math.floor(len(rows) * eval_fraction))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rows), generator=generator).tolist()
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    pad_id = processor.tokenizer.pad_token_id or 0

    def mean_loss(indices):
        with torch.no_grad():
            chunks = [indices[i : i + 16] for i in range(0, len(indices), 16)]
            losses = [_batch_loss(model, [rows[j] for j in c], cells[c], pad_id) * len(c) for c in chunks]
        return float(sum(losses) / len(indices))

    model.eval()  # no dropout: the loss before/after must be comparable
    train_probe = train_idx[:32]  # a fixed subset: a full pass over the training images costs minutes on CPU
    result = {
        "examples": len(rows),
        "train_loss_before": mean_loss(train_probe),
        "eval_loss_before": mean_loss(eval_idx),
    }
    optimizer = torch.optim.AdamW(model.multi_modal_projector.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))  # short warm-up
    for step in range(steps):
        batch = [train_idx[(step * batch_size + i) % len(train_idx)] for i in range(batch_size)]
        loss = _batch_loss(model, [rows[j] for j in batch], cells[batch], pad_id)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 10 == 0 or step == steps - 1:
            logger.info("align step %d/%d loss %.3f", step + 1, steps, loss.item())
    result.update(
        train_loss_after=mean_loss(train_probe),
        eval_loss_after=mean_loss(eval_idx),
        example_target=sentences[eval_idx[0]],
    )

    def save(folder):
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    _atomic_save(save, Path(output_dir))
    result.update(seconds=round(time.perf_counter() - start, 1), output_dir=str(output_dir))
    return result


def caption(model, processor, image, prompt: str = ALIGN_PROMPT, max_new_tokens: int = 24) -> str:
    """Greedy answer of the model about one image (a quick check of the alignment)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
