"""Collaborative tokens: each history item and candidate also gets its SASRec vector as one input embedding (stage 3).

Beyond the paper, after LLaRA's "hybrid item representation" (Liao et al., SIGIR 2024) and CoLLM (Zhang et al.): a
text LLM recommender sees titles but not what the interaction logs know about an item. Here every history item and
every candidate also gets one placeholder token, :data:`ITEM_TOKEN`, in the prompt; the model's input embedding
replaces it by ``projector(sasrec_item_vector)``, as MsrVision's image tokens are its projected image cells.

How the ids travel: the tokenizer knows :data:`ITEM_TOKEN` as one added special token (id ``placeholder_id``). After
tokenizing, :meth:`CollaborativeEmbedding.item_token_ids` turns the k-th placeholder of a row into ``offset + row`` of
the row's k-th item (``offset``: past the embedding table and the placeholder), so packed training, the shared-prefix
scorer and plain forwards all carry item identities in ``input_ids`` and need no extra model input. A placeholder left
unmapped is an error, never a silent unknown item.

The SASRec item table is frozen; the projector (2-layer MLP) is trained in SFT next to LoRA and saved by PEFT
(``modules_to_save``: ``PROJECTOR_NAME``); the table and the item-id order are saved as ``collaborative.safetensors``
next to the adapter. An item SASRec never saw (not in its training catalogue) maps to SASRec's UNKNOWN row (a zero
vector unless rare items were merged into it), a defined embedding: a cold candidate is still scored, from its title.

The user and score tokens (``collaborative_user_token``, ``collaborative_score_token``; :mod:`.collaborative_sasrec`):
one :data:`USER_TOKEN` right after the history's item tokens becomes ``user_projector(SASRec's state after the
history)``, and each candidate's item token also gets ``score_projector(SASRec's score of it after that history)``,
both computed by the input embedding from the ids in the row. So they, too, need no extra model input; the encoder's
weights go into ``collaborative.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..evaluation.encoders import UNKNOWN, SASRecConfig, SASRecEncoder
from .collaborative_sasrec import encode_histories, sasrec_scores, score_scale, token_layout
from .scoring import COLLABORATIVE_FILE, PROJECTOR_NAME, SCORE_PROJECTOR_NAME, USER_PROJECTOR_NAME

ITEM_TOKEN = "<|msr_item|>"
USER_TOKEN = "<|msr_user|>"
UNKNOWN_ROW = UNKNOWN  # the table is SASRec's own: its UNKNOWN row stands for every item it does not know


class CollaborativeProjector(nn.Module):
    """SASRec vector -> LM embedding: a 2-layer MLP, as MsrVision's projector, but on inputs scaled by one fixed
    factor (the table's standard deviation) instead of a LayerNorm: an item vector's norm carries how often SASRec
    saw it as a target, and a per-vector norm would erase that."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int, input_scale: float = 1.0, out_std: float = 0.02):
        super().__init__()
        self.register_buffer("input_scale", torch.tensor(float(input_scale)))
        self.linear_1 = nn.Linear(in_size, hidden_size)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden_size, out_size)
        # Start at the scale of the LM's own token embeddings, so a fresh projector neither drowns nor vanishes.
        nn.init.normal_(self.linear_2.weight, std=out_std / max(hidden_size, 1) ** 0.5 * 2)
        nn.init.zeros_(self.linear_2.bias)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(vectors * self.input_scale)))


class CollaborativeEmbedding(nn.Module):
    """The LM's token embedding plus one embedding per known item (ids from ``offset`` on).

    Args:
        token_embedding: the LM's own input embedding (kept, and frozen as before).
        item_table: (rows, d) SASRec item vectors; row ``UNKNOWN_ROW`` stands for every item not in ``item_ids``.
        item_ids: the item id of each row (rows without one, e.g. padding, are None).
        placeholder_id: the tokenizer's id of :data:`ITEM_TOKEN`.
        hidden_size: the projector's hidden width.
        user_encoder: the SASRec encoder that made ``item_table`` (frozen, in eval mode). With ``user_token_id``, the
            tokenizer's id of :data:`USER_TOKEN`, it adds the user token. None: item tokens only.
        score_token: with the user token, each candidate's item token also gets SASRec's score of it.
        merged_items: how many rare items SASRec's UNKNOWN row stands for (its score of UNKNOWN is one of them).
    """

    item_token = ITEM_TOKEN

    def __init__(
        self,
        token_embedding: nn.Module,
        item_table: torch.Tensor,
        item_ids: Sequence[str | None],
        placeholder_id: int,
        hidden_size: int = 256,
        user_encoder: SASRecEncoder | None = None,
        user_token_id: int | None = None,
        score_token: bool = False,
        merged_items: int = 0,
    ):
        super().__init__()
        if len(item_ids) != len(item_table):
            raise ValueError(f"{len(item_ids)} item ids for an item table of {len(item_table)} rows.")
        self.token_embedding = token_embedding
        self.register_buffer("item_table", item_table.detach().float().clone(), persistent=False)
        self.item_ids = list(item_ids)
        self.item_rows = {item: row for row, item in enumerate(self.item_ids) if item is not None}
        weight = token_embedding.weight
        if (user_encoder is None) != (user_token_id is None):
            raise ValueError("A user token needs both user_encoder and user_token_id.")
        if score_token and user_encoder is None:
            raise ValueError("A score token needs the user token: a candidate is scored after its user's history.")
        # Item ids come after both the embedding table and the tokenizer's added tokens (some models pad their table).
        self.placeholder_id = int(placeholder_id)
        self.user_token_id = None if user_token_id is None else int(user_token_id)
        self.offset = max(self.placeholder_id + 1, (self.user_token_id or 0) + 1, weight.shape[0])
        self.user_token = USER_TOKEN if user_encoder is not None else ""
        out_std = float(weight.detach().float().std())
        self.collaborative_projector = CollaborativeProjector(
            item_table.shape[1],
            hidden_size,
            weight.shape[1],
            input_scale=1.0 / float(item_table.float().std().clamp(min=1e-6)),
            out_std=out_std,
        ).to(weight.device)
        # Held outside the module tree (a list is not registered): LoRA's target matching, model.train() and the
        # model's state dict never reach the frozen encoder; it is saved in collaborative.safetensors instead.
        self._user_encoder: list[SASRecEncoder] = []
        if user_encoder is not None:
            self._user_encoder.append(user_encoder.requires_grad_(False).eval().to(weight.device))
            # The encoder ends in a LayerNorm: its states have unit scale already.
            self.collaborative_user_projector = CollaborativeProjector(
                item_table.shape[1], hidden_size, weight.shape[1], out_std=out_std
            ).to(weight.device)
        self.score_token, self.merged_items = bool(score_token), int(merged_items)
        if self.score_token:
            # SASRec's scores (log-probabilities under its default softmax loss) on unit scale, by a factor fixed by
            # the table and encoder
            self.collaborative_score_projector = CollaborativeProjector(
                1,
                hidden_size,
                weight.shape[1],
                input_scale=score_scale(self.user_encoder, self.item_table, self.merged_items),
                out_std=out_std,
            ).to(weight.device)

    @property
    def user_encoder(self) -> SASRecEncoder | None:
        return self._user_encoder[0] if self._user_encoder else None

    @property
    def weight(self):  # transformers and PEFT read the token table through the input embedding
        return self.token_embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if (input_ids == self.placeholder_id).any():
            raise ValueError(
                f"{ITEM_TOKEN} reached the model unmapped: map prompts with item_token_ids() before the forward."
            )
        is_item = input_ids >= self.offset
        is_user = input_ids == self.user_token_id if self.user_token_id is not None else torch.zeros_like(is_item)
        embeds = self.token_embedding(input_ids.masked_fill(is_item | is_user, 0))
        if is_item.any():
            vectors = self.item_table[input_ids[is_item] - self.offset]
            embeds = embeds.masked_scatter(
                is_item.unsqueeze(-1), self.collaborative_projector(vectors).to(embeds.dtype)
            )
        if is_user.any():
            layout = token_layout(input_ids, self.offset, self.user_token_id)
            states = encode_histories(self.user_encoder.to(input_ids.device), layout.histories)
            projector = self.collaborative_user_projector
            users = projector(states.to(projector.linear_1.weight.dtype))
            embeds = embeds.masked_scatter(is_user.unsqueeze(-1), users.to(embeds.dtype))
            if self.score_token and layout.is_candidate.any():
                embeds = embeds + self.candidate_scores(input_ids, layout, states).to(embeds.dtype)
        return embeds

    def candidate_scores(self, input_ids: torch.Tensor, layout, states: torch.Tensor) -> torch.Tensor:
        """(rows, L, hidden): ``score_projector(s)`` at each candidate item token (zero elsewhere), ``s`` SASRec's own
        score of the candidate after its user token's history (``collaborative_sasrec.sasrec_scores``)."""
        config = self.user_encoder.config
        scores = sasrec_scores(states, self.item_table, loss=config.loss, merged_items=self.merged_items)
        s = scores[layout.candidate_user, input_ids[layout.is_candidate] - self.offset]
        projector = self.collaborative_score_projector
        projected = projector(s[:, None].to(projector.linear_1.weight.dtype))
        out = projected.new_zeros(*input_ids.shape, projected.shape[-1])
        return out.masked_scatter(layout.is_candidate.unsqueeze(-1), projected)

    def row_of(self, item_id) -> int:
        return self.item_rows.get(str(item_id) if item_id is not None else None, UNKNOWN_ROW)

    def item_token_ids(self, input_ids: torch.Tensor, items_per_row: Sequence[Sequence]) -> torch.Tensor:
        """``input_ids`` (rows, L) with the k-th :data:`ITEM_TOKEN` of each row replaced by its k-th item's id."""
        out = input_ids.clone()
        for row, items in enumerate(items_per_row):
            positions = (input_ids[row] == self.placeholder_id).nonzero().flatten()
            if len(positions) != len(items):
                raise ValueError(
                    f"Row {row} of the prompt batch has {len(positions)} item tokens for {len(items)} items; a prompt "
                    f"gets one {ITEM_TOKEN} per history item and candidate (a user text that already holds the token?)."
                )
            rows = torch.tensor([self.row_of(item) for item in items], dtype=out.dtype)
            out[row, positions] = self.offset + rows.to(out.device)
        return out

    def record(self) -> dict:
        """What ``msr_config.json`` and the model card say of these tokens."""
        return {
            "file": COLLABORATIVE_FILE,
            "source": "SASRec item vectors (hf_mllm_msr.evaluation.baselines, default config) trained on the train split",
            "items": len(self.item_rows),
            "dim": int(self.item_table.shape[1]),
            "projector": PROJECTOR_NAME,
            "projector_hidden_size": self.collaborative_projector.linear_1.out_features,
            "token": self.item_token,
            "user_token": self.user_token or None,
            "user_projector": USER_PROJECTOR_NAME if self.user_encoder is not None else None,
            "score_token": self.score_token,
            "score_projector": SCORE_PROJECTOR_NAME if self.score_token else None,
        }

    def save(self, folder) -> None:
        """``collaborative.safetensors``: the item table, the row order and, with the user token, the SASRec encoder
        and its config (and, with the score token, its number of merged items); the projectors are in the adapter."""
        from safetensors.torch import save_file

        metadata = {
            "item_ids": json.dumps(self.item_ids),
            "hidden_size": str(self.collaborative_projector.linear_1.out_features),
        }
        tensors = {"item_table": self.item_table.contiguous()}
        if self.user_encoder is not None:
            metadata["user_encoder_config"] = json.dumps(dataclasses.asdict(self.user_encoder.config))
            state = self.user_encoder.state_dict()
            tensors.update({f"user_encoder.{k}": v.detach().contiguous() for k, v in state.items()})
        if self.score_token:
            metadata.update(score_token="true", merged_items=str(self.merged_items))
        save_file(tensors, str(Path(folder) / COLLABORATIVE_FILE), metadata)


def collaborative_embedding(model) -> CollaborativeEmbedding | None:
    """The model's :class:`CollaborativeEmbedding`, or None (a ``PeftModel`` works too)."""
    embedding = model.get_input_embeddings()
    return embedding if isinstance(embedding, CollaborativeEmbedding) else None


def add_collaborative_tokens(
    model,
    tokenizer,
    item_table,
    item_ids,
    hidden_size: int = 256,
    user_encoder: SASRecEncoder | None = None,
    score_token: bool = False,
    merged_items: int = 0,
) -> CollaborativeEmbedding:
    """Installs a :class:`CollaborativeEmbedding` as ``model``'s input embedding and :data:`ITEM_TOKEN` (and, with a
    ``user_encoder``, :data:`USER_TOKEN`) in the tokenizer; ``score_token``, ``merged_items``: as the embedding's.

    The tokenizer gains one or two special tokens; the LM's vocabulary (and output head) stays as it was, because the
    tokens never reach the embedding table."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    tokens = [ITEM_TOKEN] + ([USER_TOKEN] if user_encoder is not None else [])
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    placeholder_id = tokenizer.convert_tokens_to_ids(ITEM_TOKEN)
    user_token_id = tokenizer.convert_tokens_to_ids(USER_TOKEN) if user_encoder is not None else None
    embedding = CollaborativeEmbedding(
        model.get_input_embeddings(),
        item_table,
        item_ids,
        placeholder_id,
        hidden_size,
        user_encoder,
        user_token_id,
        score_token,
        merged_items,
    )
    model.set_input_embeddings(embedding)
    return embedding


def load_collaborative_tokens(model, tokenizer, folder) -> CollaborativeEmbedding | None:
    """Installs the collaborative tokens saved in ``folder`` (before the adapter, whose projector weights then load
    into it); None when the folder has none."""
    path = Path(folder) / COLLABORATIVE_FILE
    if not path.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        table, metadata = f.get_tensor("item_table"), f.metadata()
        prefix = "user_encoder."
        encoder_state = {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    user_encoder = None
    if "user_encoder_config" in metadata:
        config = SASRecConfig(**json.loads(metadata["user_encoder_config"]))
        user_encoder = SASRecEncoder(len(table), config)
        user_encoder.load_state_dict(encoder_state)
    return add_collaborative_tokens(
        model,
        tokenizer,
        table,
        json.loads(metadata["item_ids"]),
        hidden_size=int(metadata["hidden_size"]),
        user_encoder=user_encoder,
        score_token=metadata.get("score_token") == "true",
        merged_items=int(metadata.get("merged_items", 0)),
    )
