"""ID-based baselines scored on exactly the candidates the MLLM recommender sees: popularity, SASRec, GRU4Rec.

Common API (plain torch, small, deterministic given the config's seed):

    model = SASRec(SASRecConfig(epochs=30)).fit(examples["train"], examples["validation"])
    scores = model.score(examples["test"])      # one float per row, higher = more likely
    ranking_metrics(scores, examples["test"]["label"], examples["test"]["user_id"])

Training sequences come from the train split's positive rows: ``history + [candidate]``. Sequences of a user that are
a prefix of another of the same user's sequences (leave-one-out / sliding windows) are dropped, so no interaction is
counted twice. The train split's negative rows are not used: SASRec/GRU4Rec sample their own negatives.

Item vocabulary: 0 = padding, 1 = UNKNOWN, 2 = begin-of-sequence, then every item seen at least ``min_item_count``
times in the training sequences. Rarer items are trained AS the unknown item, so the unknown embedding learns what "a
rarely seen item" looks like; items never seen in training (cold items in validation/test, in histories or as
candidates) map to it at scoring time, never a crash. The unknown item stands for ``num_merged_items`` items, and is
scored as ONE of them, not as their sum (which would rank every cold candidate above the popular ones): sampled
negatives (loss "bce") draw it with probability proportional to that number, and the softmax score (loss "ce")
subtracts ``log(num_merged_items)``. If no item was merged, the unknown embedding stays at zero.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hf_mllm_msr.metrics import ranking_metrics
from hf_mllm_msr.sequence_encoders import BOS, PAD, UNKNOWN, GRU4RecEncoder, SASRecEncoder

logger = logging.getLogger(__name__)


def training_sequences(train) -> list[list[str]]:
    """Chronological item sequences ``history + [candidate]`` of the positive rows, prefixes of a user's longer
    sequence dropped (they repeat its interactions)."""
    by_user = defaultdict(list)
    for user_id, history, candidate, label in zip(
        train["user_id"], train["history"], train["candidate"], train["label"]
    ):
        if label == 1:
            by_user[user_id].append(list(history) + [candidate])
    sequences = []
    for user_sequences in by_user.values():
        kept = []
        for seq in sorted(user_sequences, key=len, reverse=True):
            if not any(longer[: len(seq)] == seq for longer in kept):
                kept.append(seq)
        sequences.extend(kept)
    if not sequences:
        raise ValueError("The train split has no positive rows (label == 1): nothing to learn from.")
    return sequences


class PopularityBaseline:
    """Scores a candidate by its number of interactions in the training sequences (unseen items score 0)."""

    def fit(self, train, validation=None) -> PopularityBaseline:
        self.item_counts = Counter(item for seq in training_sequences(train) for item in seq)
        return self

    def score(self, examples) -> np.ndarray:
        return np.array([self.item_counts.get(item, 0) for item in examples["candidate"]], dtype=np.float64)


@dataclass
class NextItemConfig:
    """Hyperparameters shared by SASRec and GRU4Rec (defaults follow Kang & McAuley, 2018, scaled down)."""

    hidden_size: int = field(default=64, metadata={"help": "Item embedding and hidden state size."})
    num_blocks: int = field(default=2, metadata={"help": "Self-attention blocks (SASRec) or GRU layers (GRU4Rec)."})
    max_len: int = field(default=50, metadata={"help": "Most recent items kept per input sequence."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout on embeddings and inside the blocks."})
    loss: str = field(
        default="bce",
        metadata={
            "help": "'bce': one sampled negative per position, binary cross-entropy (as in SASRec); "
            "'ce': full softmax cross-entropy over the catalogue (better for small catalogues)."
        },
    )
    epochs: int = field(default=50, metadata={"help": "Maximum training epochs."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    batch_size: int = field(default=128, metadata={"help": "Training sequences per step."})
    patience: int = field(default=5, metadata={"help": "Stop after this many epochs without a better validation AUC."})
    min_item_count: int = field(
        default=2, metadata={"help": "Items seen fewer times in training are trained as the shared UNKNOWN item."}
    )
    score_batch_size: int = field(default=512, metadata={"help": "Distinct histories encoded at once when scoring."})
    num_threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads while training/scoring (0: leave torch's setting). Models this small run "
            "fastest on one thread; more threads on a busy machine were 30x slower."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, shuffling, dropout and negatives."})
    show_progress: bool = field(default=True, metadata={"help": "Show a tqdm bar over epochs."})

    def __post_init__(self):
        if self.loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {self.loss!r}.")


@dataclass
class SASRecConfig(NextItemConfig):
    num_heads: int = field(default=1, metadata={"help": "Attention heads per block (must divide hidden_size)."})


@dataclass
class GRU4RecConfig(NextItemConfig):
    num_blocks: int = field(default=1, metadata={"help": "Stacked GRU layers."})


@contextmanager
def _torch_threads(num_threads: int):
    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _NextItemBaseline:
    """Next-item training and candidate scoring shared by SASRec and GRU4Rec; subclasses pick the encoder."""

    config_class = NextItemConfig
    encoder_class = None

    def __init__(self, config: NextItemConfig | None = None):
        self.config = config or self.config_class()

    def _ids(self, items) -> list[int]:
        return [self.item_index.get(item, UNKNOWN) for item in items]

    def _left_pad(self, rows: list[list[int]]) -> torch.Tensor:
        """Last max_len ids of each row, left-padded to the longest row (not to max_len: cheaper, same result)."""
        width = min(self.config.max_len, max(len(row) for row in rows))
        out = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            row = row[-width:]
            out[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        return out

    def fit(self, train, validation=None):
        """Train on the train split's sequences; keep the epoch with the best validation AUC (early stopping).

        Args:
            train: examples split (``user_id``, ``history``, ``candidate``, ``label``).
            validation: examples split scored after every epoch with `ranking_metrics` (AUC); without it, every
                epoch runs and the last one is kept.
        """
        cfg = self.config
        sequences = training_sequences(train)
        counts = Counter(item for seq in sequences for item in seq)
        kept = sorted(item for item, count in counts.items() if count >= cfg.min_item_count)
        if not kept:
            raise ValueError(
                f"No item occurs {cfg.min_item_count}+ times in the training sequences; lower min_item_count."
            )
        self.item_index = {item: i + 3 for i, item in enumerate(kept)}
        self.num_merged_items = len(counts) - len(kept)
        num_items = len(kept) + 3
        logger.info(
            "%s: %d training sequences, %d known items, %d rare items merged into UNKNOWN.",
            type(self).__name__,
            len(sequences),
            len(kept),
            self.num_merged_items,
        )

        full = [[BOS] + self._ids(seq) for seq in sequences]
        inputs, targets = self._left_pad([s[:-1] for s in full]), self._left_pad([s[1:] for s in full])
        self.history_ = []
        # fork_rng: seed init/dropout without touching the caller's global RNG.
        with torch.random.fork_rng(), _torch_threads(cfg.num_threads):
            torch.manual_seed(cfg.seed)
            generator = torch.Generator().manual_seed(cfg.seed)
            self.model = self.encoder_class(num_items, cfg)
            optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.98))
            best_auc, best_state, epochs_without_gain = -math.inf, None, 0
            bar = tqdm(range(cfg.epochs), desc=f"{type(self).__name__} epochs", disable=not cfg.show_progress)
            for epoch in bar:
                loss = self._train_epoch(inputs, targets, optimizer, generator)
                record = {"epoch": epoch + 1, "loss": loss}
                if validation is not None:
                    record["validation_auc"] = ranking_metrics(
                        self.score(validation), validation["label"], validation["user_id"]
                    )["auc"]
                    if record["validation_auc"] > best_auc:
                        best_auc, epochs_without_gain = record["validation_auc"], 0
                        best_state = copy.deepcopy(self.model.state_dict())
                    else:
                        epochs_without_gain += 1
                self.history_.append(record)
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
                if epochs_without_gain >= cfg.patience:
                    logger.info("Early stop after epoch %d (best validation AUC %.4f).", epoch + 1, best_auc)
                    break
            if best_state is not None:
                self.model.load_state_dict(best_state)
        self.model.eval()
        return self

    def _never_targets(self) -> list[int]:
        # Excluded from the softmax; UNKNOWN too when no item was merged into it (it then keeps its zero embedding).
        return [PAD, BOS] if self.num_merged_items else [PAD, UNKNOWN, BOS]

    def _train_epoch(self, inputs, targets, optimizer, generator) -> float:
        self.model.train()
        num_items = self.model.item_embedding.num_embeddings
        total, steps = 0.0, 0
        for batch in torch.randperm(len(inputs), generator=generator).split(self.config.batch_size):
            width = int((inputs[batch] != PAD).sum(1).max())  # drop columns that are padding in the whole batch
            hidden, target = self.model(inputs[batch][:, -width:]), targets[batch][:, -width:]
            real = target != PAD
            item_embeddings = self.model.item_embedding.weight
            if self.config.loss == "ce":
                logits = hidden[real] @ item_embeddings.T
                logits[:, self._never_targets()] = -torch.inf
                loss = nn.functional.cross_entropy(logits, target[real])
            else:
                # Uniform over the training items: an index past the known ones is one of the merged rare items.
                negatives = torch.randint(
                    BOS + 1, num_items + self.num_merged_items, target.shape, generator=generator
                )
                negatives[negatives >= num_items] = UNKNOWN
                pos = (hidden * item_embeddings[target]).sum(-1)[real]
                neg = (hidden * item_embeddings[negatives]).sum(-1)[real]
                loss = nn.functional.binary_cross_entropy_with_logits(
                    torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        return total / steps

    def score(self, examples) -> np.ndarray:
        """One score per row: the candidate's logit after the user's history ('bce'), or its log-probability over
        the catalogue ('ce'), so that scores are comparable across users for the global AUC. Each distinct history
        is encoded once. Unknown items (history or candidate) use the shared UNKNOWN embedding."""
        if not hasattr(self, "model"):
            raise RuntimeError(f"{type(self).__name__}.score() called before fit().")
        with torch.no_grad(), _torch_threads(self.config.num_threads):
            return self._score(examples)

    def _score(self, examples) -> np.ndarray:
        self.model.eval()
        histories, row_history = {}, []
        for history in examples["history"]:
            row_history.append(histories.setdefault(tuple(history), len(histories)))
        candidates = torch.tensor(self._ids(examples["candidate"]), dtype=torch.long)
        unknown = int((candidates == UNKNOWN).sum())
        if unknown:
            logger.info("%d of %d candidates are unknown to %s.", unknown, len(candidates), type(self).__name__)
        embeddings = self.model.item_embedding.weight
        encoded, log_normalizer = [], []
        unique = [[BOS] + self._ids(h) for h in histories]
        for start in range(0, len(unique), self.config.score_batch_size):
            last = self.model(self._left_pad(unique[start : start + self.config.score_batch_size]))[:, -1]
            encoded.append(last)
            if self.config.loss == "ce":
                logits = last @ embeddings.T
                logits[:, self._never_targets()] = -torch.inf
                log_normalizer.append(torch.logsumexp(logits, dim=-1))
        hidden = torch.cat(encoded)[torch.tensor(row_history, dtype=torch.long)]
        scores = (hidden * embeddings[candidates]).sum(-1)
        if self.config.loss == "ce":
            scores -= torch.cat(log_normalizer)[torch.tensor(row_history, dtype=torch.long)]
            # p(UNKNOWN) is the mass of all merged items; one unknown candidate gets its share.
            scores[candidates == UNKNOWN] -= math.log(max(self.num_merged_items, 1))
        return scores.double().numpy()


class SASRec(_NextItemBaseline):
    """SASRec (Kang & McAuley, 2018): causal self-attention, next-item prediction, shared item embeddings."""

    config_class = SASRecConfig
    encoder_class = SASRecEncoder


class GRU4Rec(_NextItemBaseline):
    """GRU4Rec (Hidasi et al., 2016): a GRU over the history; next-item training as SASRec (not session-parallel)."""

    config_class = GRU4RecConfig
    encoder_class = GRU4RecEncoder
