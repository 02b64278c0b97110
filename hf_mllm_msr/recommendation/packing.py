"""Shared-prefix packing: all of a user's candidates in one training sequence (stage 3, SFT).

Every candidate prompt of a user starts with the same tokens (system turn + user summary); only the candidate part
differs. A packed sequence holds that prefix once and then each candidate's remaining tokens as a *branch*::

    [prefix][branch 1][branch 2] ... [branch n]

A 4D attention mask lets each branch see the prefix and itself only, and every token keeps the position it has in
its own unpacked row, so the logits at a branch's last token (where the answer is predicted) equal the unpacked
row's. The answer itself need not be in the sequence: the loss reads the logits at those last tokens.

Models differ in how their own masks and positions are built, and the packed mask must reproduce them exactly
(:class:`AttentionRules`): Gemma3 lets the tokens of one image attend to each other both ways and has
sliding-window layers; Qwen2-VL uses 3-D rotary positions computed over the whole row (image grid included).
The mask is additive float (0 allowed, ``finfo.min`` masked): transformers reads a boolean 4D mask differently
under ``eager`` attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .scoring import TOKEN_TYPE_KEYS

# Image tensors laid out per row, (rows, images_per_row, ...) (Idefics3 / SmolVLM): a packed sequence holds the
# images of all its rows, so these are regrouped per sequence. Every other image tensor is flat, one entry per image
# (or patch) in text order, and the order of the rows already is the order of the packed sequences.
PER_ROW_IMAGE_KEYS = {"pixel_values": 5, "pixel_attention_mask": 4}


@dataclass
class AttentionRules:
    """What a model's own attention does beyond causal masking, which the packed mask must reproduce.

    Args:
        sliding_window: window of the sliding-attention layers (their mask gets the window too), or None.
        sliding_layers_only: True when only some layers slide (the mask is then a dict per layer type).
        bidirectional_images: the tokens of one image attend to each other both ways (Gemma3).
        rope_index: computes the unpacked rows' multimodal positions (Qwen2-VL's ``get_rope_index``), or None.
    """

    sliding_window: int | None = None
    sliding_layers_only: bool = False
    bidirectional_images: bool = False
    rope_index: Callable | None = None


def attention_rules(model) -> AttentionRules:
    """The :class:`AttentionRules` of a model (a ``PeftModel`` works too)."""
    inner = getattr(model, "get_base_model", lambda: model)()
    config = inner.config
    text_config = config.get_text_config()
    if getattr(text_config, "use_bidirectional_attention", False):
        raise ValueError(f"{type(inner).__name__} attends bidirectionally; shared-prefix packing needs a causal LM.")
    window = getattr(text_config, "sliding_window", None)
    layer_types = getattr(text_config, "layer_types", None)
    if layer_types is not None:
        sliding = "sliding_attention" in layer_types
        rules = AttentionRules(
            sliding_window=window if sliding else None,
            sliding_layers_only=sliding and "full_attention" in layer_types,
        )
    else:  # Mistral-style: one window for every layer
        rules = AttentionRules(sliding_window=window)
    rules.bidirectional_images = config.model_type == "gemma3"
    for module in (inner, getattr(inner, "model", None)):
        if module is not None and hasattr(module, "get_rope_index"):
            rules.rope_index = module.get_rope_index
    return rules


def pack_rows(rows: Sequence[dict[str, torch.Tensor]], prefix_length: int) -> dict[str, torch.Tensor]:
    """One packed sequence from unpacked rows that share their first ``prefix_length`` tokens.

    Args:
        rows: per candidate, ``input_ids`` (L,), ``position_ids`` ((L,) or (k, L) for multimodal rotary positions)
            and, where the model has them, the ``TOKEN_TYPE_KEYS`` (L,).
        prefix_length: from :func:`shared_prefix_length`.

    Returns:
        ``input_ids``, ``position_ids`` and the token-type keys of the packed sequence; ``branch`` (-1 on the prefix,
        else the row index), ``row_index`` (each token's index in its unpacked row) and ``answer_index`` (n,), the
        packed position of each row's last token.
    """
    if not rows:
        raise ValueError("Cannot pack an empty list of candidates: every user needs at least one candidate.")
    keys = ["input_ids", "position_ids", *[k for k in TOKEN_TYPE_KEYS if k in rows[0]]]
    pieces = {key: [rows[0][key][..., :prefix_length]] for key in keys}
    branch, row_index, answer_index = [torch.full((prefix_length,), -1)], [torch.arange(prefix_length)], []
    length = prefix_length
    for i, row in enumerate(rows):
        n = row["input_ids"].shape[-1]
        if n <= prefix_length:
            raise ValueError(f"Row {i} has {n} tokens, not more than the shared prefix of {prefix_length}.")
        for key in keys:
            pieces[key].append(row[key][..., prefix_length:])
        branch.append(torch.full((n - prefix_length,), i))
        row_index.append(torch.arange(prefix_length, n))
        length += n - prefix_length
        answer_index.append(length - 1)
    packed = {key: torch.cat(value, dim=-1) for key, value in pieces.items()}
    packed.update(branch=torch.cat(branch), row_index=torch.cat(row_index), answer_index=torch.tensor(answer_index))
    return packed


def image_blocks(token_types: torch.Tensor) -> torch.Tensor:
    """Per token, the index of the image run it belongs to (consecutive tokens of type 1), else -1. (B, L) -> (B, L)."""
    is_image = token_types == 1
    starts = is_image & ~torch.nn.functional.pad(is_image, (1, 0))[:, :-1]
    return torch.where(is_image, starts.long().cumsum(1) - 1, -1)


def branch_attention_mask(
    branch: torch.Tensor,
    row_index: torch.Tensor,
    valid: torch.Tensor,
    *,
    blocks: torch.Tensor | None = None,
    sliding_window: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive (B, 1, L, L) mask of packed sequences: a token sees the earlier tokens of the prefix and of its own
    branch (plus, with ``blocks``, every token of its own image), within ``sliding_window`` of its unpacked row.

    Args:
        branch: (B, L) branch of each token, -1 on the prefix.
        row_index: (B, L) index of each token in its unpacked row (what a sliding window counts in).
        valid: (B, L) False on padding; a padding token sees only itself (so no softmax row is empty).
        blocks: (B, L) image run of each token (:func:`image_blocks`), -1 elsewhere; None for causal images.
        sliding_window: the keys a query sees lie less than this many tokens back in its row.
    """
    length = branch.shape[1]
    query_branch, key_branch = branch[:, :, None], branch[:, None, :]
    allowed = torch.ones(length, length, dtype=torch.bool, device=branch.device).tril()[None]
    if blocks is not None:
        allowed = allowed | ((blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0))
    allowed = allowed & ((key_branch == -1) | (key_branch == query_branch)) & valid[:, None, :] & valid[:, :, None]
    if sliding_window is not None:
        allowed = allowed & (row_index[:, :, None] - row_index[:, None, :] < sliding_window)
    allowed = allowed | torch.diag_embed(~valid)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=branch.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def regroup_row_images(value: torch.Tensor, rows_per_sequence: Sequence[int]) -> torch.Tensor:
    """(rows, k, ...) image tensors laid out per row -> (sequences, max images, ...), zero-padded (Idefics3 skips
    all-zero images)."""
    chunks = torch.split(value, list(rows_per_sequence))
    merged = [chunk.reshape(1, -1, *value.shape[2:]) for chunk in chunks]
    most = max(m.shape[1] for m in merged)
    padded = [torch.nn.functional.pad(m, (0, 0) * (value.ndim - 2) + (0, most - m.shape[1])) for m in merged]
    return torch.cat(padded)


# --- Attention over the branches only -------------------------------------------------------------

# Under a dense (L, L) mask, attention costs L^2 per layer although a branch token sees only the prefix and its own
# branch: 21 candidates of 40 tokens after a 50-token prefix make L = 890, ten times the keys a token needs. This
# attention function computes the prefix and every branch as their own small attention problems (queries of one
# segment, keys of the prefix + that segment), reading each one's mask out of the dense mask, so every rule the
# dense mask encodes (padding, sliding windows, bidirectional images) holds unchanged.
BRANCH_ATTENTION = "msr_branch_sdpa"


def branch_layout(branch: torch.Tensor, valid: torch.Tensor) -> dict:
    """Index tensors of the segments of packed sequences (the prefix, then every branch), for
    :func:`branch_sdpa_attention`. Positions are flat, ``row * L + position``.

    Returns ``{"segments": {"prefix": ..., "branches": ...}, "output": (B * L,)}``. Each group of segments holds the
    ``row`` (N,), ``query`` (N * Q,) and ``key`` (N * K,) positions of its N segments, padded to the longest (Q
    queries, K keys), their local ``query_position`` (N, Q) / ``key_position`` (N, K) and ``key_valid`` (N, K);
    ``output`` says where each token's attention output is in the concatenation of every group's N * Q queries
    (padding tokens point past its end, at a zero row).
    """
    length = branch.shape[1]
    groups = {"prefix": [], "branches": []}
    for row in range(branch.shape[0]):
        prefix = ((branch[row] == -1) & valid[row]).nonzero()[:, 0]
        groups["prefix"].append((row, prefix, prefix))
        for b in branch[row][valid[row] & (branch[row] >= 0)].unique().tolist():
            own = (branch[row] == b).nonzero()[:, 0]
            groups["branches"].append((row, own, torch.cat([prefix, own])))
    layout, order, offset = {}, [], 0
    for name, items in groups.items():
        queries, keys = max(len(q) for _, q, _ in items), max(len(k) for _, _, k in items)
        query, key = (
            torch.zeros(len(items), queries, dtype=torch.long),
            torch.zeros(len(items), keys, dtype=torch.long),
        )
        query_valid = torch.zeros(len(items), queries, dtype=torch.bool)
        key_valid = torch.zeros(len(items), keys, dtype=torch.bool)
        for i, (_, q, k) in enumerate(items):
            query[i, : len(q)], query_valid[i, : len(q)] = q, True
            key[i, : len(k)], key_valid[i, : len(k)] = k, True
        rows = torch.tensor([row for row, _, _ in items])
        flat_query = (rows[:, None] * length + query).flatten()
        kept = query_valid.flatten().nonzero()[:, 0]
        order.append((flat_query[kept], offset + kept))
        offset += flat_query.numel()
        layout[name] = dict(
            row=rows,
            query=flat_query,
            key=(rows[:, None] * length + key).flatten(),
            query_position=query,
            key_position=key,
            key_valid=key_valid,
        )
    output = torch.full((branch.numel(),), offset, dtype=torch.long)
    for tokens, computed in order:
        output[tokens] = computed
    return {"segments": layout, "output": output}


def branch_sdpa_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, branch_layout=None, **kwargs
):
    """A transformers attention function (``AttentionInterface``): SDPA per segment of a packed sequence when the
    forward gets a ``branch_layout``; plain SDPA otherwise (scoring, generation, the vision tower).

    Keys and values keep their own (grouped) heads, so they are gathered before SDPA broadcasts them to the query
    heads (``enable_gqa``): SmolLM2's 3 key-value heads are a third of the copies. Gathers go through
    ``index_select``, whose backward is a fast ``index_add``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if branch_layout is None or not torch.is_tensor(attention_mask) or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    flat_query = query.transpose(1, 2).reshape(batch * length, heads, dim)
    flat_key, flat_value = (t.transpose(1, 2).reshape(batch * length, kv_heads, dim) for t in (key, value))
    outputs = []
    for segment in branch_layout["segments"].values():
        n, q_len = segment["query_position"].shape
        k_len = segment["key_position"].shape[1]
        q = flat_query.index_select(0, segment["query"]).view(n, q_len, heads, dim).transpose(1, 2)
        k = flat_key.index_select(0, segment["key"]).view(n, k_len, kv_heads, dim).transpose(1, 2)
        v = flat_value.index_select(0, segment["key"]).view(n, k_len, kv_heads, dim).transpose(1, 2)
        rows = segment["row"][:, None, None]
        mask = attention_mask[rows, 0, segment["query_position"][:, :, None], segment["key_position"][:, None, :]]
        mask = mask.masked_fill(~segment["key_valid"][:, None, :], torch.finfo(mask.dtype).min)[:, None]
        attended = torch.nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=dropout if module.training else 0.0,
            scale=scaling,
            enable_gqa=kv_heads != heads,
        )
        outputs.append(attended.transpose(1, 2).reshape(n * q_len, heads, dim))
    outputs.append(query.new_zeros(1, heads, dim))  # what padding tokens get
    output = torch.cat(outputs).index_select(0, branch_layout["output"])
    return output.view(batch, length, heads, dim), None


def register_branch_attention() -> None:
    """Makes :data:`BRANCH_ATTENTION` a transformers attention implementation (its masks are SDPA's)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(BRANCH_ATTENTION, branch_sdpa_attention)
    AttentionMaskInterface.register(BRANCH_ATTENTION, sdpa_mask)


@contextlib.contextmanager
def branch_attention(model):
    """Within the block, a model whose language model runs SDPA runs :func:`branch_sdpa_attention` instead (same
    results; other implementations are left as they are, and attend over the dense packed mask)."""
    register_branch_attention()
    inner = getattr(model, "get_base_model", lambda: model)()
    text_config = inner.config.get_text_config()
    previous = text_config._attn_implementation
    if previous != "sdpa":
        yield False
        return
    target = {"text_config": BRANCH_ATTENTION} if text_config is not inner.config else BRANCH_ATTENTION
    inner.set_attn_implementation(target)
    try:
        yield True
    finally:
        inner.set_attn_implementation({"text_config": previous} if text_config is not inner.config else previous)
