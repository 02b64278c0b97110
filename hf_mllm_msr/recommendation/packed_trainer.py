"""Shared-prefix packed SFT of the Yes/No recommender (``packing_mode: shared_prefix``).

A training example is a *group*: one user (their preference summary) and all of their candidates with labels.
:class:`SharedPrefixCollator` renders every candidate prompt exactly as scoring does, packs the group into one
sequence (:mod:`hf_mllm_msr.recommendation.packing`) and marks each candidate's last prompt token, where the answer is predicted.
:class:`SharedPrefixSFTTrainer` (a TRL ``SFTTrainer``) computes the logits at those positions only and trains on

* ``pointwise``: cross-entropy of the answer token ("Yes" or "No") over the vocabulary, per candidate: the
  paper's loss, taken on the answer token alone;
* ``listwise``: per positive, softmax cross-entropy over ``logit(Yes) - logit(No)`` of the positive and the
  group's negatives: the quantity scoring ranks by, as p(Yes)/(p(Yes)+p(No)) is its sigmoid;
* ``both``: their sum.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import torch
from trl import SFTTrainer

from .candidate_prompts import render_prompts
from .compiled_mlp import compiled_gated_activation
from .fused_lora import scaled_before_up_projection
from .packing import (
    PER_ROW_IMAGE_KEYS,
    AttentionRules,
    branch_attention,
    branch_attention_mask,
    branch_layout,
    image_blocks,
    pack_rows,
    regroup_row_images,
)
from .scoring import TOKEN_TYPE_KEYS, image_token_mask, shared_prefix_length

logger = logging.getLogger(__name__)

ANSWER_LOSSES = ("pointwise", "listwise", "both")
ANSWER_KEYS = ("answer_mask", "answer_labels", "answer_groups", "answer_weights")


class SharedPrefixCollator:
    """Collates groups (``user_text``, ``candidates``, ``labels``, ``answer_weights`` and, in image mode,
    ``images``) into packed sequences, padded to the longest one of the batch.

    Args:
        processing_class: the tokenizer (text modes) or processor (image mode).
        mode: ``"image"``, ``"summary"`` or ``"title"``.
        rules: the model's :class:`~hf_mllm_msr.packing.AttentionRules`.
        image_ids: the model's image placeholder token ids (``scoring.image_token_ids``).
        items: the model's `hf_mllm_msr.recommendation.collaborative.CollaborativeEmbedding`, or None; with it, groups
            carry ``history_items`` and every item placeholder becomes its item's id.
    """

    def __init__(
        self, processing_class, mode: str, rules: AttentionRules | None = None, image_ids=frozenset(), items=None
    ):
        self.processor, self.mode = processing_class, mode
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.rules, self.image_ids = rules or AttentionRules(), set(image_ids)
        self.items = items

    def encode(self, features: Sequence[dict]) -> tuple[list[dict], dict]:
        """The unpacked rows of every group (``input_ids``, ``position_ids``, token types; no padding) and the image
        tensors of all rows, in order."""
        item_token, user_token = (self.items.item_token, self.items.user_token) if self.items is not None else ("", "")
        history = [f["history_items"] if self.items is not None else [] for f in features]
        texts = [
            text
            for f, h in zip(features, history)
            for text in render_prompts(
                self.processor, self.mode, f["user_text"], f["candidates"], item_token, len(h), user_token
            )
        ]
        kwargs = dict(padding=True, padding_side="right", return_tensors="pt", add_special_tokens=False)
        if self.mode == "image":
            images = [[image] for f in features for image in f["images"]]
            encoding = self.processor(text=texts, images=images, **kwargs)
        else:
            encoding = self.tokenizer(texts, **kwargs)
        if self.items is not None:
            row_items = [[*h, c["item_id"]] for f, h in zip(features, history) for c in f["candidates"]]
            encoding["input_ids"] = self.items.item_token_ids(encoding["input_ids"], row_items)
        lengths = encoding["attention_mask"].sum(1).tolist()
        token_keys = {"input_ids", "attention_mask", *TOKEN_TYPE_KEYS}
        image_inputs = {k: v for k, v in encoding.items() if k not in token_keys}
        if self.rules.rope_index is not None and "image_grid_thw" in image_inputs:
            positions, _ = self.rules.rope_index(
                encoding["input_ids"],
                mm_token_type_ids=encoding.get("mm_token_type_ids"),
                image_grid_thw=encoding["image_grid_thw"],
                attention_mask=encoding["attention_mask"],
            )
        else:
            positions = torch.arange(encoding["input_ids"].shape[1]).expand_as(encoding["input_ids"])
        rows = []
        for i, n in enumerate(lengths):
            row = {"input_ids": encoding["input_ids"][i, :n], "position_ids": positions[..., i, :n]}
            row.update({k: encoding[k][i, :n] for k in TOKEN_TYPE_KEYS if k in encoding})
            row["blocked"] = image_token_mask(encoding, i, n, self.image_ids)
            rows.append(row)
        return rows, image_inputs

    def pack(self, rows: Sequence[dict]) -> dict:
        prefix = shared_prefix_length([r["input_ids"] for r in rows], [r["blocked"] for r in rows])
        return pack_rows(rows, prefix)

    def packed_length(self, feature: dict) -> tuple[int, list[int]]:
        """``(prefix length, [tokens each candidate adds])`` of one group, for splitting groups that do not fit."""
        rows, _ = self.encode([feature])
        prefix = shared_prefix_length([r["input_ids"] for r in rows], [r["blocked"] for r in rows])
        return prefix, [len(r["input_ids"]) - prefix for r in rows]

    def __call__(self, features: Sequence[dict]) -> dict:
        for f in features:
            if not f["candidates"]:
                raise ValueError(f"User group {f.get('user_id', '?')!r} has no candidates; every group needs one.")
        rows, image_inputs = self.encode(features)
        packed, start = [], 0
        for f in features:
            packed.append(self.pack(rows[start : start + len(f["candidates"])]))
            start += len(f["candidates"])
        batch, length = len(packed), max(p["input_ids"].shape[-1] for p in packed)

        def padded(key, value=0):
            shape = packed[0][key].shape[:-1]
            out = torch.full((batch, *shape, length), value, dtype=packed[0][key].dtype)
            for i, p in enumerate(packed):
                out[i, ..., : p[key].shape[-1]] = p[key]
            return out

        valid = padded("branch", -2) != -2
        inputs = {"input_ids": padded("input_ids", self.tokenizer.pad_token_id)}
        position_ids = padded("position_ids")
        # (B, k, L) multimodal positions -> (k, B, L), as Qwen2-VL takes them
        inputs["position_ids"] = position_ids.transpose(0, 1) if position_ids.ndim == 3 else position_ids
        for key in TOKEN_TYPE_KEYS:
            if key in packed[0]:
                inputs[key] = padded(key)
        branch, row_index = padded("branch", -2), padded("row_index")
        blocks = None
        if self.rules.bidirectional_images and "token_type_ids" in inputs:
            blocks = image_blocks(inputs["token_type_ids"])
        full = branch_attention_mask(branch, row_index, valid, blocks=blocks)
        if self.rules.sliding_window is None:
            inputs["attention_mask"] = full
        else:
            sliding = branch_attention_mask(
                branch, row_index, valid, blocks=blocks, sliding_window=self.rules.sliding_window
            )
            layers_only = self.rules.sliding_layers_only
            inputs["attention_mask"] = (
                {"full_attention": full, "sliding_attention": sliding} if layers_only else sliding
            )
        # read by the branch attention (`packing.branch_attention`), ignored by the other implementations
        inputs["branch_layout"] = branch_layout(branch, valid)
        for key, value in image_inputs.items():
            if PER_ROW_IMAGE_KEYS.get(key) == value.ndim:
                value = regroup_row_images(value, [len(f["candidates"]) for f in features])
            inputs[key] = value
        answer_mask = torch.zeros(batch, length, dtype=torch.bool)
        for i, p in enumerate(packed):
            answer_mask[i, p["answer_index"]] = True
        inputs["answer_mask"] = answer_mask
        inputs["answer_labels"] = torch.tensor([int(y) for f in features for y in f["labels"]])
        inputs["answer_groups"] = torch.tensor([g for g, f in enumerate(features) for _ in f["labels"]])
        inputs["answer_weights"] = torch.tensor([float(w) for f in features for w in f["answer_weights"]])
        return inputs


def answer_losses(logits, labels, groups, weights, *, yes_id: int, no_id: int) -> dict[str, torch.Tensor]:
    """Pointwise and listwise losses of the answer logits of packed candidates.

    Args:
        logits: (N, vocab) logits at each candidate's last prompt token.
        labels: (N,) 1 for a positive, 0 for a negative.
        groups: (N,) the group (user) of each candidate.
        weights: (N,) pointwise weight (0 for a positive repeated in a later chunk of a split group).

    Returns:
        ``pointwise``: sum_i w_i * CE(logits_i, Yes if y_i else No) / sum_i w_i.
        ``listwise``: mean over positives p of log(1 + sum_{negatives n of p's group} exp(d_n - d_p)), where
        d = logit(Yes) - logit(No); 0 when no group has both a positive and a negative.
    """
    labels = labels.to(logits.device)
    targets = torch.where(labels == 1, yes_id, no_id)
    per_row = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    weights = weights.to(per_row)
    pointwise = (per_row * weights).sum() / weights.sum().clamp(min=1e-12)
    margin = (logits[:, yes_id] - logits[:, no_id]).float()
    terms = []
    for group in groups.unique():
        in_group = groups.to(logits.device) == group
        positives, negatives = margin[in_group & (labels == 1)], margin[in_group & (labels == 0)]
        if len(positives) and len(negatives):
            terms.append(torch.nn.functional.softplus(torch.logsumexp(negatives, 0) - positives))
    listwise = torch.cat(terms).mean() if terms else margin.sum() * 0.0
    return {"pointwise": pointwise, "listwise": listwise, "both": pointwise + listwise}


class SharedPrefixSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` on packed groups: the logits at the answer positions only, and the chosen answer loss.

    Args:
        answer_loss: ``"pointwise"``, ``"listwise"`` or ``"both"`` (see the module docstring).
        answer_ids: the (Yes, No) first answer tokens (``candidate_prompts.answer_token_ids``).
        *args, **kwargs: as ``SFTTrainer``; ``data_collator`` is a :class:`SharedPrefixCollator`.
    """

    def __init__(self, *args, answer_loss: str = "both", answer_ids: tuple[int, int], **kwargs):
        if answer_loss not in ANSWER_LOSSES:
            raise ValueError(f"answer_loss must be one of {ANSWER_LOSSES}, got {answer_loss!r}.")
        self.answer_loss, (self.yes_id, self.no_id) = answer_loss, answer_ids
        super().__init__(*args, **kwargs)

    def train(self, *args, **kwargs):
        # Attention per branch instead of over the dense mask, LoRA updates and the MLP's activation product with
        # fewer passes over the activations: the same results, at less cost.
        with (
            branch_attention(self.model) as used,
            scaled_before_up_projection(self.model),
            compiled_gated_activation(self.model),
        ):
            if not used:
                logger.info("The language model does not run SDPA: packed sequences attend over the dense mask.")
            return super().train(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        answers = {key: inputs.pop(key) for key in ANSWER_KEYS}
        outputs = model(**inputs, use_cache=False, logits_to_keep=answers["answer_mask"])
        logits = outputs.logits.reshape(-1, outputs.logits.shape[-1])
        losses = answer_losses(
            logits,
            answers["answer_labels"],
            answers["answer_groups"],
            answers["answer_weights"],
            yes_id=self.yes_id,
            no_id=self.no_id,
        )
        for name in ("pointwise", "listwise"):
            self._metrics[mode][f"{name}_loss"].append(
                self.accelerator.gather_for_metrics(losses[name].detach()).mean().item()
            )
        if mode == "train":
            tokens = (inputs["input_ids"] != self._tokenizer.pad_token_id).sum()
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(tokens).sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        loss = losses[self.answer_loss]
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


def split_groups(groups: datasets.Dataset, collator: SharedPrefixCollator, max_length: int | None) -> datasets.Dataset:
    """Groups whose packed sequence would be longer than ``max_length`` tokens become several groups, each with the
    prefix again; no candidate is ever cut. Every chunk keeps the group's positives (so the listwise loss has one to
    rank), counted by the pointwise loss in the first chunk only."""
    if not max_length:
        return groups
    rows, split = {name: [] for name in groups.column_names}, 0
    for group in groups:
        prefix, sizes = collator.packed_length(group)
        if prefix + sum(sizes) <= max_length:
            for name in rows:
                rows[name].append(group[name])
            continue
        positives = [i for i, y in enumerate(group["labels"]) if y == 1]
        fixed = prefix + sum(sizes[i] for i in positives)
        negatives = [i for i, y in enumerate(group["labels"]) if y != 1]
        if any(fixed + sizes[i] > max_length for i in negatives) or (not negatives and fixed > max_length):
            raise ValueError(
                f"User group {group.get('user_id', '?')!r} does not fit max_length={max_length}: its shared prefix "
                f"({prefix} tokens) and positives ({fixed - prefix}) leave no room for a negative candidate "
                f"(the longest adds {max(sizes)}). Raise max_length, or lower max_user_tokens."
            )
        chunks, current, used = [], [], fixed
        for i in negatives:
            if used + sizes[i] > max_length:
                chunks.append(current)
                current, used = [], fixed
            current.append(i)
            used += sizes[i]
        chunks.append(current)
        split += 1
        for number, chunk in enumerate(chunks):
            keep = positives + chunk
            for name in rows:
                value = group[name]
                if name == "answer_weights":
                    value = [value[i] if (number == 0 or i not in positives) else 0.0 for i in range(len(value))]
                rows[name].append([value[i] for i in keep] if isinstance(value, list) else value)
    if split:
        logger.info("Split %d user groups longer than max_length=%d into chunks that fit.", split, max_length)
    return datasets.Dataset.from_dict(rows, features=groups.features)
