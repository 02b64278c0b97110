"""Align the projector of the CPU vision-language model with no caption data.

`align_projector` trains the projector alone (encoder and LM frozen) to state what the toolkit can compute for any
image on its own: the classifier's top ImageNet label and the dominant colour names ("An image of a comic book,
mostly red and white."), optionally with each image token pulled towards its cell's colour word.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .vision_build import atomic_save
from .vision_lm import EFFICIENTNET, PROJECTOR_OUTPUTS, MsrVisionForConditionalGeneration

logger = logging.getLogger(__name__)

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


def cell_colours(image, grid: int, size: int = 63) -> list[str]:
    """The most common colour name of each of the ``grid x grid`` cells of a PIL image, row by row: the order of
    the pooled encoder cells, which the projector turns into image tokens."""
    from ..data.images import COLOUR_NAMES, name_pixels

    step = size // grid
    names = name_pixels(np.asarray(image.convert("RGB").resize((step * grid,) * 2).convert("HSV")))
    blocks = [names[r * step : (r + 1) * step, c * step : (c + 1) * step] for r in range(grid) for c in range(grid)]
    return [COLOUR_NAMES[np.bincount(block.ravel()).argmax()] for block in blocks]


def _image_facts(model, processor, images, batch_size: int = 16):
    """Pooled encoder cells for all images + one target sentence per image (top-1 label and colours)."""
    from .offline import imagenet_labels

    cells, sentences = [], []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        pixel_values = processor.image_processor(chunk, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            features = model.vision_tower.extract_features(pixel_values)
            cells.append(model.model.encode_images(pixel_values, features))
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
    embeds = model.model.merge_image_embeddings(input_ids, embeds, model.model.project_cells(cells))
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
    word_anchor_weight: float = 0.0,
    projector_output: str | None = None,
) -> dict:
    """Trains only the projector so the model states each image's top ImageNet label and dominant colours.

    With ``word_anchor_weight``, each image token is also pulled towards its cell's colour name
    (:func:`cell_colours`): a recommender must match the image with a colour named in its prompt, and an image token
    that looks like the word " red" can be matched the way the LM matches a repeated word. With a ``"word_mixture"``
    projector the pull is the cross-entropy of the token's word scores against the colour word (the token *is* a
    mixture of words); with an ``"embedding"`` projector, the relative squared distance to the word's embedding.

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
        word_anchor_weight: weight of the word-anchor loss (averaged over the image tokens) next to the caption
            loss; 0: captions only.
        projector_output: ``"embedding"`` or ``"word_mixture"`` (``MsrVisionConfig.projector_output``), written
            into the aligned model's config; None keeps the built model's.

    Returns:
        dict with `train_loss_before/after` (on up to 32 training examples), `eval_loss_before/after`, `seconds`, `examples`, `output_dir`.
    """
    from transformers import AutoProcessor

    if len(images) < 2:
        raise ValueError(f"align_projector needs at least 2 images, got {len(images)}.")
    start = time.perf_counter()
    model = MsrVisionForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(model_dir)
    if projector_output is not None:
        if projector_output not in PROJECTOR_OUTPUTS:
            raise ValueError(f"projector_output={projector_output!r}; use one of {PROJECTOR_OUTPUTS}.")
        model.config.projector_output = projector_output
    model.requires_grad_(False)
    model.multi_modal_projector.requires_grad_(True)
    images = list(images)
    cells, sentences = _image_facts(model, processor, images)
    word_ids = torch.tensor(
        [
            [processor.tokenizer(" " + name, add_special_tokens=False)["input_ids"][0] for name in names]
            for names in (cell_colours(image, model.config.image_grid) for image in images)
        ]
    )
    word_embeddings = model.get_input_embeddings().weight.detach()

    def anchor_loss(indices):
        projected = model.multi_modal_projector(cells[indices])
        if model.config.projector_output == "word_mixture":
            logits = model.model.image_word_logits(projected)
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1), word_ids[indices].flatten())
        target = word_embeddings[word_ids[indices]]
        return ((projected - target) ** 2).sum(-1).mean() / (target**2).sum(-1).mean()

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
    if word_anchor_weight:
        with torch.no_grad():
            result["eval_anchor_loss_before"] = float(anchor_loss(eval_idx))
    optimizer = torch.optim.AdamW(model.multi_modal_projector.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))  # short warm-up
    for step in range(steps):
        batch = [train_idx[(step * batch_size + i) % len(train_idx)] for i in range(batch_size)]
        loss = _batch_loss(model, [rows[j] for j in batch], cells[batch], pad_id)
        if word_anchor_weight:
            loss = loss + word_anchor_weight * anchor_loss(batch)
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
    if word_anchor_weight:
        with torch.no_grad():
            result["eval_anchor_loss_after"] = float(anchor_loss(eval_idx))

    def save(folder):
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    atomic_save(save, Path(output_dir))
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
