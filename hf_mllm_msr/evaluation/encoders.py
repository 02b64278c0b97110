"""The SASRec and GRU4Rec baselines' configs and sequence encoders (:mod:`hf_mllm_msr.evaluation.baselines` trains and scores
them).

Both encoders read left-padded item ids (0 = padding) and return one hidden state per position; the item embeddings
double as the output layer. Defaults follow RecBole's configs for the two models (``SASRec.yaml``, ``GRU4Rec.yaml``:
full-softmax cross-entropy, 50 items of context, early stopping on validation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

PAD, UNKNOWN, BOS = 0, 1, 2  # item vocabulary: padding, the merged rare/cold item, begin-of-sequence


@dataclass
class NextItemConfig:
    """Hyperparameters shared by SASRec and GRU4Rec (defaults: RecBole's, see the module docstring)."""

    hidden_size: int = field(default=64, metadata={"help": "Item embedding size (and SASRec's hidden size)."})
    num_blocks: int = field(default=2, metadata={"help": "Self-attention blocks (SASRec) or GRU layers (GRU4Rec)."})
    max_len: int = field(
        default=50, metadata={"help": "Items of context; longer training sequences are cut into windows."}
    )
    dropout: float = field(default=0.5, metadata={"help": "Dropout on embeddings and inside the blocks."})
    loss: str = field(
        default="ce",
        metadata={
            "help": "'ce': full softmax cross-entropy over the catalogue at every position (RecBole's default); "
            "'bce': one sampled negative per position, binary cross-entropy (the SASRec paper)."
        },
    )
    full_softmax_max_items: int = field(
        default=5000,
        metadata={
            "help": "Loss 'ce' over a larger item vocabulary trains in the large-catalogue regime: a sampled softmax "
            "(each target against `num_sampled_items` items drawn uniformly, shared by the batch) on batches of "
            "`sampled_batch_size` windows. The full softmax costs targets x items per epoch (17 s an epoch on one "
            "core at 10 k items); the sampled one ~6 s, and its cheaper steps let smaller batches take the sparse "
            "item embeddings through their early plateau in fewer epochs (docs/experiments.md, 2026-12-06). "
            "0: always the full softmax. ML-100K's 1.7 k items are below the default."
        },
    )
    num_sampled_items: int = field(
        default=1024, metadata={"help": "Negatives per batch of the sampled softmax (see full_softmax_max_items)."}
    )
    sampled_batch_size: int = field(
        default=32, metadata={"help": "Training windows per step under the sampled softmax (instead of batch_size)."}
    )
    epochs: int = field(default=100, metadata={"help": "Maximum training epochs."})
    learning_rate: float = field(
        default=2e-3, metadata={"help": "Adam learning rate (RecBole: 1e-3 at 2048 targets)."}
    )
    batch_size: int = field(
        default=128,
        metadata={
            "help": "Training windows (of up to max_len targets) per step. 128 windows (~3,500 targets) at lr 2e-3 "
            "gave SASRec the test AUC of RecBole's 1e-3 (0.903 vs 0.906 on ML-100K) in half the CPU time."
        },
    )
    patience: int = field(
        default=10, metadata={"help": "Stop after this many epochs without a better validation AUC."}
    )
    min_item_count: int = field(
        default=1,
        metadata={
            "help": "Items seen fewer times in training are trained as one shared UNKNOWN item (1: every item "
            "seen in training has its own embedding, as in RecBole)."
        },
    )
    score_batch_size: int = field(default=512, metadata={"help": "Distinct histories encoded at once when scoring."})
    num_threads: int = field(
        default=0,
        metadata={
            "help": "torch CPU threads while training/scoring (0: leave torch's setting). On a busy machine, 1 can "
            "be much faster (threads fighting over cores were 30x slower)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, shuffling, dropout and negatives."})
    show_progress: bool = field(default=True, metadata={"help": "Show a tqdm bar over epochs."})

    def __post_init__(self):
        if self.loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {self.loss!r}.")
        for name in ("num_sampled_items", "sampled_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")


@dataclass
class SASRecConfig(NextItemConfig):
    num_heads: int = field(default=2, metadata={"help": "Attention heads per block (must divide hidden_size)."})
    inner_size: int = field(default=256, metadata={"help": "Width of each block's feed-forward layer."})


@dataclass
class GRU4RecConfig(NextItemConfig):
    num_blocks: int = field(default=1, metadata={"help": "Stacked GRU layers."})
    dropout: float = field(default=0.3, metadata={"help": "Dropout on the item embeddings."})
    gru_size: int = field(default=128, metadata={"help": "GRU hidden size (projected back to hidden_size)."})


class SASRecEncoder(nn.Module):
    """Causal self-attention over left-padded item ids; returns one hidden state per position.

    Positions are counted from the right end (the most recent item is always position max_len - 1), so a history
    gets the same hidden states however much padding its batch needs.
    """

    def __init__(self, num_items: int, config: SASRecConfig):
        super().__init__()
        self.config = config  # kept, so that a saved encoder can be built again (collaborative user tokens)
        self.num_heads = config.num_heads
        self.item_embedding = _item_embedding(num_items, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_len, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        block = nn.TransformerEncoderLayer(
            config.hidden_size,
            config.num_heads,
            config.inner_size,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, config.num_blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden_size)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        length = item_ids.shape[1]
        is_pad = item_ids == PAD
        x = self.item_embedding(item_ids) * math.sqrt(self.item_embedding.embedding_dim)
        positions = torch.arange(
            self.position_embedding.num_embeddings - length, self.position_embedding.num_embeddings
        )
        x = self.dropout(x + self.position_embedding(positions)) * ~is_pad.unsqueeze(-1)
        # A position sees itself and earlier non-padding positions. Letting every position see itself keeps padding
        # rows from being fully masked (softmax over nothing = NaN).
        blocked = torch.ones(length, length, dtype=torch.bool).triu(1)[None] | is_pad[:, None, :]
        blocked &= ~torch.eye(length, dtype=torch.bool)
        x = self.blocks(x, mask=blocked.repeat_interleave(self.num_heads, dim=0))
        return self.norm(x)


class GRU4RecEncoder(nn.Module):
    """GRU over left-padded item ids, projected to the item embedding size (RecBole's GRU4Rec).

    The rows are packed, so padding never enters the recurrence and the result does not depend on the batch.
    """

    def __init__(self, num_items: int, config: GRU4RecConfig):
        super().__init__()
        self.item_embedding = _item_embedding(num_items, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.hidden_size, config.gru_size, config.num_blocks, batch_first=True)
        self.projection = nn.Linear(config.gru_size, config.hidden_size)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        length = item_ids.shape[1]
        lengths = (item_ids != PAD).sum(1)
        leading_pads = (length - lengths)[:, None]
        positions = torch.arange(length)[None]
        # Move each row's items to the front (packing wants right padding), run the GRU, move the outputs back.
        front = item_ids.gather(1, (positions + leading_pads).clamp(max=length - 1))
        packed = nn.utils.rnn.pack_padded_sequence(
            self.dropout(self.item_embedding(front)), lengths.clamp(min=1), batch_first=True, enforce_sorted=False
        )
        out = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=length)[0]
        back = (positions - leading_pads).clamp(min=0)
        return self.projection(out.gather(1, back[..., None].expand(-1, -1, out.shape[-1])))


def _item_embedding(num_items: int, hidden_size: int) -> nn.Embedding:
    # Small init (std 1/sqrt(hidden)): the embeddings are also the output layer, and unit-variance entries would start
    # training with logits of size ~hidden and a saturated loss.
    embedding = nn.Embedding(num_items, hidden_size, padding_idx=PAD)
    nn.init.normal_(embedding.weight, std=hidden_size**-0.5)
    with torch.no_grad():  # UNKNOWN starts neutral (score 0); it only moves if rare items were merged into it
        embedding.weight[[PAD, UNKNOWN]] = 0.0
    return embedding
