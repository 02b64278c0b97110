"""What the collaborative tokens read from SASRec (stage 3): its item table, its state after a history (the user token)
and its own score of a candidate after that history (the score token), and where in a row each of them belongs.

The user token (CoLLM's user embedding): item vectors alone do not carry SASRec's sequence encoder, which is what ranks
a user's candidates. With it, the prompt holds one ``USER_TOKEN`` right after the history's item tokens; the input
embedding runs the frozen SASRec encoder over the item ids just before it (the same ``[BOS] + history`` the baseline
scores with) and puts ``user_projector(state)`` in its place.

The score token: from the user state and a candidate's item vector the LM would still have to compute SASRec's ranking
itself (a dot product of two projected tokens; on MovieLens it recovered it only in part). With it, each candidate's
item token also gets ``score_projector(s)``, ``s`` being exactly what ``SASRec.score`` gives that candidate after that
history (:func:`sasrec_scores`), so the LM reads SASRec's ranking and learns how far to trust it next to the title.

Where they go (:func:`token_layout`), in a row of any layout (one prompt, a packed prefix with every candidate as a
branch, several groups): a user token's history is the contiguous run of item tokens right before it; every other
item token after a user token of the same row is a candidate, scored after the nearest user token before it. So each
needs the user token in the same forward: the packed trainer and one-forward scoring have it, and the shared-prefix
scorer embeds whole rows before it runs their suffixes (``YesNoScorer.score``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch

from ..evaluation.encoders import BOS, PAD, UNKNOWN, SASRecEncoder

logger = logging.getLogger(__name__)

SCALE_HISTORIES = 256  # one-item histories whose scores set the score projector's input scale (evenly spaced items)


@dataclass
class TokenLayout:
    """Where the user and score tokens of a batch of rows are (:func:`token_layout`).

    Attributes:
        histories: per user token (row-major order), its history's item-table rows, oldest first.
        is_candidate: (rows, L) the candidate item tokens.
        candidate_user: per candidate token (row-major order), the index in ``histories`` of its user token.
    """

    histories: list[list[int]]
    is_candidate: torch.Tensor
    candidate_user: torch.Tensor


def token_layout(input_ids: torch.Tensor, offset: int, user_token_id: int) -> TokenLayout:
    """The histories of the user tokens of ``input_ids`` (item ids from ``offset`` on) and the candidates after them."""
    is_item, is_user = input_ids >= offset, input_ids == user_token_id
    in_history = torch.zeros_like(is_item)
    histories = []
    for row, column in is_user.nonzero().tolist():
        start = column
        while start > 0 and bool(is_item[row, start - 1]):
            start -= 1
        in_history[row, start:column] = True
        histories.append((input_ids[row, start:column] - offset).tolist())
    # per position, the latest user token at or before it in its row (user indices grow along a row), else -1
    user_index = torch.full(input_ids.shape, -1, dtype=torch.long, device=input_ids.device)
    user_index[is_user] = torch.arange(len(histories), device=input_ids.device)
    nearest = user_index.cummax(dim=1).values
    is_candidate = is_item & ~in_history & (nearest >= 0)
    return TokenLayout(histories, is_candidate, nearest[is_candidate])


def encode_histories(encoder: SASRecEncoder, histories: list[list[int]]) -> torch.Tensor:
    """SASRec's state after each history: ``encoder([BOS] + history)[-1]`` on its last ``max_len`` ids, left-padded,
    as the baseline scores (an empty history gives the state after BOS)."""
    rows = [[BOS, *h][-encoder.config.max_len :] for h in histories]
    width = max(map(len, rows))
    device = encoder.position_embedding.weight.device
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows], device=device)
    with torch.no_grad():
        return encoder(ids)[:, -1]


def sasrec_scores(states: torch.Tensor, item_table: torch.Tensor, *, loss: str, merged_items: int) -> torch.Tensor:
    """(states, rows): what ``SASRec.score`` gives every item row after the history of each state: ``state . item``;
    for the softmax loss (``"ce"``) its log-probability over SASRec's vocabulary, i.e. minus the log-sum-exp over every
    row but the never-target ones (padding, BOS and, when no item was merged into it, UNKNOWN), with UNKNOWN scored as
    one of the ``merged_items`` items merged into it (minus ``log(merged_items)``)."""
    with torch.no_grad():
        scores = states.float() @ item_table.float().T
        if loss != "ce":
            return scores
        targets = scores.clone()
        targets[:, [PAD, BOS] if merged_items else [PAD, UNKNOWN, BOS]] = -torch.inf
        scores -= torch.logsumexp(targets, dim=-1, keepdim=True)
        scores[:, UNKNOWN] -= math.log(max(merged_items, 1))
        return scores


def score_scale(encoder: SASRecEncoder, item_table: torch.Tensor, merged_items: int) -> float:
    """1 / the standard deviation of SASRec's scores of every item (not padding, UNKNOWN or BOS) after the empty
    history and after one-item histories of up to :data:`SCALE_HISTORIES` evenly spaced items: the score projector's
    fixed input scale, a function of the table and the encoder only (the same when an adapter is loaded again)."""
    items = torch.arange(BOS + 1, len(item_table))
    picked = items[torch.linspace(0, len(items) - 1, min(SCALE_HISTORIES, len(items))).long()].tolist()
    states = encode_histories(encoder, [[]] + [[i] for i in picked])
    scores = sasrec_scores(states, item_table.to(states.device), loss=encoder.config.loss, merged_items=merged_items)
    return 1.0 / float(scores[:, BOS + 1 :].std().clamp(min=1e-6))


def sasrec_tokens(model) -> tuple[torch.Tensor, list, SASRecEncoder, int]:
    """``(item_table, item_ids, encoder, merged_items)`` of a fitted ``SASRec`` baseline, for ``add_collaborative_tokens``
    (``encoder``: its ``user_encoder``; ``merged_items``: how many rare items its UNKNOWN row stands for)."""
    table = model.model.item_embedding.weight.detach().clone()
    item_ids: list = [None] * len(table)
    for item, row in model.item_index.items():
        item_ids[row] = item
    return table, item_ids, model.model, model.num_merged_items


def sasrec_item_table(sequences, examples, items, seed: int = 0):
    """:func:`sasrec_tokens` of the SASRec that the evaluation trains on the same split (same config and seed: the
    baseline's own model).

    Args:
        sequences: the protocol's ``sequences``.
        examples: the protocol's splits (train users are learned from; validation positives stop early).
        items: the items dataset (every catalogue item gets a row, as in the baseline).
        seed: SASRec's seed.
    """
    from ..evaluation.baseline_scoring import training_sequences
    from ..evaluation.baselines import SASRec
    from ..evaluation.encoders import SASRecConfig

    start = time.perf_counter()
    model = SASRec(SASRecConfig(seed=seed)).fit(
        training_sequences(sequences, examples), examples.get("validation"), catalogue=items["item_id"]
    )
    logger.info("Collaborative tokens: SASRec trained in %.0f s.", time.perf_counter() - start)
    return sasrec_tokens(model)
