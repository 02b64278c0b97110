"""Yes/No scoring of MLLM-MSR's recommender, for one user and their candidates (stage 3).

The user's preference summary and one candidate go into the model's chat template; the score is
``p(Yes) / (p(Yes) + p(No))`` at the first answer token, read from the token the model really emits right after
the generation prompt. All of a user's candidates start with the same tokens (system turn + user summary), so
that prefix runs once and only the candidates' suffixes run, in batches, on a shared view of its KV cache.

Three modes (the same rows, three ways to show the candidate):

* ``"image"``: an image-text-to-text model sees the candidate image (after the user part).
* ``"summary"``: a text-only model gets the candidate's item summary (summary + textualized visual cues).
* ``"title"``: the title-only ablation; the user is their history's titles, the candidate its title.

The prompts and the answer tokens come from :mod:`.candidate_prompts`, the choices and their checks from
:mod:`.msr_config`. This module imports nothing else of the package, and those two nothing but
:mod:`hf_mllm_msr.prompts`: all four are copied next to a pipeline saved with ``pipe.save_pretrained``, which then
loads (for a user who opts into ``trust_remote_code``) where hf_mllm_msr is not installed.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch

from .candidate_prompts import answer_token_ids, candidate_text_fields, fit_user_summary, render_prompts
from .msr_config import DEFAULT_CANDIDATE_TEXT, check_choice

logger = logging.getLogger(__name__)

# An adapter's collaborative tokens (`.collaborative`): the item table's file, and the projectors' module names, unique
# so that PEFT's modules_to_save matches nothing else.
COLLABORATIVE_FILE = "collaborative.safetensors"
PROJECTOR_NAME = "collaborative_projector"
USER_PROJECTOR_NAME = "collaborative_user_projector"
SCORE_PROJECTOR_NAME = "collaborative_score_projector"
TOKEN_TYPE_KEYS = ("token_type_ids", "mm_token_type_ids")  # per-token image markers (Gemma3, Qwen2-VL)


def shared_prefix_length(rows: Sequence[torch.Tensor], blocked: Sequence[torch.Tensor | None] = ()) -> int:
    """Length of the longest token prefix that all ``rows`` share, leaving every row at least its last token.

    Args:
        rows: 1D token ids, one tensor per row (no padding).
        blocked: per row, a boolean tensor of tokens the prefix must stop before (image tokens: an image belongs to
            its candidate), or None.
    """
    if not rows:
        return 0
    reference = rows[0]
    limit = min(len(row) for row in rows) - 1
    for row in rows[1:]:
        same = (row[:limit] == reference[:limit]).long()
        limit = int(same.cumprod(0).sum())
    for mask in blocked:
        if mask is not None and mask[:limit].any():
            limit = int(mask[:limit].nonzero()[0, 0])
    return max(limit, 0)


def image_token_ids(model, tokenizer) -> set[int]:
    """The ids of the image placeholder tokens of a model and its tokenizer (an image belongs to its candidate, so
    a shared prefix stops before the first of them)."""
    config = getattr(model, "config", None)
    ids = {getattr(config, k, None) for k in ("image_token_id", "image_token_index")}
    ids |= {getattr(tokenizer, "image_token_id", None)}
    ids.discard(None)
    return ids


def image_token_mask(encoding, row: int, length: int, image_ids: set[int]) -> torch.Tensor:
    """Which of the first ``length`` tokens of ``encoding``'s row ``row`` belong to an image."""
    ids = encoding["input_ids"][row, :length]
    mask = torch.isin(ids, torch.tensor(sorted(image_ids) or [-1], device=ids.device))
    for key in TOKEN_TYPE_KEYS:
        if key in encoding:
            mask |= encoding[key][row, :length] != 0
    return mask


# --- Scoring --------------------------------------------------------------------------------------


def _uses_multimodal_rope(model) -> bool:
    # Qwen2-VL-style models derive 3-D positions from the whole sequence (image grid included); a
    # suffix run on a cached prefix would get the wrong positions, so they are scored one by one.
    inner = getattr(model, "get_base_model", lambda: model)()
    return any(hasattr(m, "get_rope_index") for m in (inner, getattr(inner, "model", None)) if m is not None)


class YesNoScorer:
    """Scores candidates for users with a (LoRA-tuned) chat model: p(Yes) / (p(Yes) + p(No)).

    Args:
        model: a causal LM or image-text-to-text model (a ``PeftModel`` works too).
        processing_class: its tokenizer (text modes) or processor (image mode).
        mode: ``"image"``, ``"summary"`` or ``"title"``.
        max_user_tokens: cut user summaries to this many tokens, as at training time.
        shared_prefix: run each user's common prefix once (results equal one forward per candidate).
        candidate_text: mode "summary": what a candidate shows of its item summary (one of
            ``msr_config.CANDIDATE_TEXTS``), as at training time.
        item_text: the items column the model was trained to see after each title (``"text"``, ``"genres"``;
            empty: none); candidates carry it as ``text``, and
            :meth:`~hf_mllm_msr.recommendation.recommender.MsrRecommender.score_examples` adds it from the items.
    """

    def __init__(
        self,
        model,
        processing_class,
        *,
        mode: str,
        max_user_tokens: int | None = None,
        shared_prefix: bool = True,
        candidate_text: str = DEFAULT_CANDIDATE_TEXT,
        item_text: str = "",
    ):
        check_choice("mode", mode)
        check_choice("candidate_text", candidate_text)
        self.candidate_text, self.item_text = candidate_text, item_text
        self.model, self.processor, self.mode = model, processing_class, mode
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_user_tokens = max_user_tokens
        self.yes_id, self.no_id = answer_token_ids(processing_class, mode)
        self.shared_prefix = shared_prefix and not _uses_multimodal_rope(model)
        if shared_prefix and not self.shared_prefix:
            logger.info(
                "%s uses multimodal rotary positions: scoring one forward per candidate.", type(model).__name__
            )
        self._image_token_ids = image_token_ids(model, self.tokenizer)
        # Collaborative tokens (`hf_mllm_msr.recommendation.collaborative`), found on the model by duck typing: this
        # module is copied as remote code and imports nothing of the package beyond the prompts and msr_config.
        embedding = model.get_input_embeddings()
        self._items = embedding if hasattr(embedding, "item_token_ids") else None
        # A score token reads the user token in the shared prefix: suffixes then run on their whole rows' embeddings.
        self._embed_whole_rows = bool(getattr(self._items, "score_token", False))

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _encode(self, user_summary: str, candidates: Sequence[dict], history_items: Sequence = ()):
        candidates = [candidate_text_fields(c, self.candidate_text) for c in candidates]
        item_token, user_token = (
            (self._items.item_token, self._items.user_token) if self._items is not None else ("", "")
        )
        texts = render_prompts(
            self.processor, self.mode, user_summary, candidates, item_token, len(history_items), user_token
        )
        kwargs = dict(padding=True, padding_side="right", return_tensors="pt", add_special_tokens=False)
        if self.mode == "image":
            enc = self.processor(text=texts, images=[[c["image"]] for c in candidates], **kwargs)
        else:
            enc = self.tokenizer(texts, **kwargs)
        if self._items is not None:
            items = [[*history_items, c.get("item_id")] for c in candidates]
            enc["input_ids"] = self._items.item_token_ids(enc["input_ids"], items)
        return enc.to(self.device)

    def _p_yes(self, logits: torch.Tensor) -> list[float]:
        pair = logits[:, [self.yes_id, self.no_id]].float()
        return torch.softmax(pair, dim=-1)[:, 0].tolist()

    @torch.no_grad()
    def score_naive(self, user_summary: str, candidates: Sequence[dict], history_items: Sequence = ()) -> list[float]:
        """One full forward per candidate (the reference the shared-prefix path must equal)."""
        user_summary = fit_user_summary(user_summary, self.tokenizer, self.max_user_tokens)
        scores = []
        for candidate in candidates:
            enc = self._encode(user_summary, [candidate], history_items)
            scores += self._p_yes(self.model(**enc, logits_to_keep=1).logits[:, -1])
        return scores

    def _prefix_length(self, encodings) -> int:
        rows, blocked = [], []
        for enc in encodings:
            for row, n in enumerate(enc["attention_mask"].sum(1).tolist()):
                rows.append(enc["input_ids"][row, :n])
                blocked.append(image_token_mask(enc, row, n, self._image_token_ids))
        return shared_prefix_length(rows, blocked)

    @torch.no_grad()
    def score(
        self, user_summary: str, candidates: Sequence[dict], batch_size: int = 16, history_items: Sequence = ()
    ) -> list[float]:
        """p(Yes) for each candidate of one user.

        Args:
            user_summary: the user's preference summary (mode "title": their title-history summary).
            candidates: dicts with ``title`` and, per mode, ``summary``/``visual_cues`` or ``image`` (and ``item_id``
                for a model with collaborative tokens; without one a candidate gets the unknown item's token).
            batch_size: candidates per suffix batch.
            history_items: the ids of the user's history items, oldest first: their collaborative tokens (ignored by
                a model without them).
        """
        if not candidates:
            return []
        history_items = list(history_items) if self._items is not None else []
        if not self.shared_prefix:
            return self.score_naive(user_summary, candidates, history_items)
        user_summary = fit_user_summary(user_summary, self.tokenizer, self.max_user_tokens)
        encodings = [
            self._encode(user_summary, candidates[i : i + batch_size], history_items)
            for i in range(0, len(candidates), batch_size)
        ]
        prefix_len = self._prefix_length(encodings)
        if prefix_len == 0:
            return self.score_naive(user_summary, candidates, history_items)
        prefix_ids = encodings[0]["input_ids"][:1, :prefix_len]
        prefix = self.model(
            input_ids=prefix_ids, attention_mask=torch.ones_like(prefix_ids), use_cache=True, logits_to_keep=1
        )
        scores = []
        for enc in encodings:
            batch = enc["input_ids"].shape[0]
            suffix_mask = enc["attention_mask"][:, prefix_len:]
            cache = _expand_cache(prefix.cache, batch)
            inputs = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
            for key in ("token_type_ids", "mm_token_type_ids"):
                if key in inputs:
                    inputs[key] = inputs[key][:, prefix_len:]
            last = suffix_mask.sum(1) - 1  # right padding: each row's last real token
            if self._embed_whole_rows:
                inputs["inputs_embeds"] = self.model.get_input_embeddings()(enc["input_ids"])[:, prefix_len:]
            else:
                inputs["input_ids"] = enc["input_ids"][:, prefix_len:]
            out = self.model(
                cache=cache,
                use_cache=True,
                attention_mask=torch.cat(
                    [torch.ones(batch, prefix_len, dtype=suffix_mask.dtype, device=suffix_mask.device), suffix_mask], 1
                ),
                logits_to_keep=last[:, None],
                **inputs,
            )
            scores += self._p_yes(out.logits[:, -1])
        return scores


def _expand_cache(cache, batch: int):
    """The prefix cache seen by ``batch`` suffix rows, without copying it per row.

    Layers are shallow copies whose key/value tensors are broadcast views; a forward concatenates the suffix onto
    them into new tensors, so the prefix cache stays as it was for the next batch. Cache types that may update in
    place are deep-copied and repeated instead.
    """
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if not all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in getattr(cache, "layers", [None])):
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(batch)
        return cache
    expanded = copy.copy(cache)
    expanded.layers = []
    for layer in cache.layers:
        layer = copy.copy(layer)
        if layer.get_seq_length() > 0:
            layer.keys = layer.keys.expand(batch, -1, -1, -1)
            layer.values = layer.values.expand(batch, -1, -1, -1)
        expanded.layers.append(layer)
    return expanded
