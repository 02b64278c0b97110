"""The sequential ID baselines, SASRec and GRU4Rec, scored on exactly the candidates the MLLM recommender sees.

Common API (plain torch, small, deterministic given the config's seed; popularity and `training_sequences` are in
:mod:`.baseline_scoring`):

    train = training_sequences(load_msr_dataset(name, "sequences", **protocol), examples)
    model = SASRec(SASRecConfig()).fit(train, examples["validation"], catalogue=items["item_id"])
    scores = model.score(examples["test"])      # one float per row, higher = more likely
    ranking_metrics(scores, examples["test"]["label"], examples["test"]["user_id"])

They learn from every interaction of the training users, in time order (the protocol's ``sequences``), not from the
example rows: ``max_history`` limits what the LLM's prompt holds, not what an ID model may learn from. A test user's
known history is the model's input at scoring time; no validation or test target is ever trained on.

SASRec and GRU4Rec are trained as RecBole trains them: next-item prediction at every position of a sequence (a
sequence longer than ``max_len`` is cut into overlapping windows, each target predicted once with at least
``max_len / 2`` items of context), full-softmax cross-entropy over the item vocabulary by default, and early stopping
on the validation users' full-catalogue AUC (where each validation target ranks among every item the user has not
seen: far less noisy than the validation rows' one or two sampled negatives).

Large catalogues: past ``full_softmax_max_items`` items (default 5 000; ML-100K has 1.7 k) the full softmax, whose cost
is targets x items per epoch, becomes a sampled softmax (each target against ``num_sampled_items`` uniformly drawn
items shared by the batch) on smaller batches (``sampled_batch_size``). On 10 k items and 100 k ratings that took an
epoch from 17 s to ~6 s of one core, and the extra steps took the sparse item embeddings (10 ratings each) through
their early plateau in 8 epochs instead of 16 (docs/experiments.md, 2026-12-06).

Item vocabulary: 0 = padding, 1 = UNKNOWN, 2 = begin-of-sequence, then every item seen at least ``min_item_count``
times in training (default 1: all, as RecBole) and every catalogue item never seen (it is trained only as a
negative, so a cold candidate scores low, as in RecBole). With ``min_item_count`` > 1 the rarer items are trained AS
the unknown item, which stands for ``num_merged_items`` items and is scored as ONE of them: sampled negatives (loss
"bce") draw it with probability proportional to that number, and the softmax score (loss "ce") subtracts
``log(num_merged_items)``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import Counter
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.loading import InsufficientDataError
from .encoders import (
    BOS,
    PAD,
    UNKNOWN,
    GRU4RecConfig,
    GRU4RecEncoder,
    NextItemConfig,
    SASRecConfig,
    SASRecEncoder,
)

logger = logging.getLogger(__name__)


@contextmanager
def _torch_threads(num_threads: int):
    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def windows(ids: list[int], max_len: int) -> list[tuple[list[int], list[int]]]:
    """``(inputs, targets)`` next-item windows of ``[BOS] + ids``, each at most ``max_len`` long. Windows overlap by
    half; a target already predicted by an earlier window is PAD (not trained on again)."""
    full = [BOS, *ids]
    inputs, targets = full[:-1], full[1:]
    if len(inputs) <= max_len:
        return [(inputs, targets)]
    stride = max(1, max_len // 2)
    starts = list(range(0, len(inputs) - max_len + 1, stride))
    if starts[-1] != len(inputs) - max_len:
        starts.append(len(inputs) - max_len)
    out, covered = [], 0
    for start in starts:
        end = start + max_len
        window_targets = [t if start + j >= covered else PAD for j, t in enumerate(targets[start:end])]
        out.append((inputs[start:end], window_targets))
        covered = end
    return out


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

    def fit(self, sequences: list[list[str]], validation=None, catalogue=None):
        """Train on the training sequences; keep the epoch with the best validation AUC (early stopping).

        Args:
            sequences: item sequences in time order (`baseline_scoring.training_sequences`).
            validation: examples split whose positives (``history`` -> ``candidate``) measure the full-catalogue AUC
                after every epoch; without it, every epoch runs and the last one is kept.
            catalogue: every item id (e.g. ``items["item_id"]``): items never seen in training get an embedding of
                their own, trained as negatives only, as RecBole does.
        """
        cfg = self.config
        counts = Counter(item for seq in sequences for item in seq)
        if not counts or max(counts.values()) < 2:
            # every item embedding would be trained by a single target: nothing carries over to another user
            raise InsufficientDataError(f"no item occurs twice in {len(sequences)} training sequences")
        kept = sorted(item for item, count in counts.items() if count >= cfg.min_item_count)
        if not kept:
            raise InsufficientDataError(
                f"no item occurs {cfg.min_item_count}+ times in {len(sequences)} training sequences"
            )
        cold = sorted(set(catalogue or ()) - set(counts))
        self.item_index = {item: i + 3 for i, item in enumerate(kept + cold)}
        self.num_merged_items = len(counts) - len(kept)
        num_items = len(kept) + len(cold) + 3
        full = [w for seq in sequences for w in windows(self._ids(seq), cfg.max_len)]
        inputs, targets = self._left_pad([w[0] for w in full]), self._left_pad([w[1] for w in full])
        self.training_size = {"sequences": len(sequences), "interactions": sum(map(len, sequences))}
        # the full softmax costs targets x items: past full_softmax_max_items, each batch samples its negatives
        self.sampled_softmax = cfg.loss == "ce" and 0 < cfg.full_softmax_max_items < num_items
        logger.info(
            "%s: %d training sequences (%d interactions, %d windows), %d known items, %d catalogue items never seen, "
            "%d rare items merged into UNKNOWN; loss %s.",
            type(self).__name__,
            len(sequences),
            self.training_size["interactions"],
            len(full),
            len(kept),
            len(cold),
            self.num_merged_items,
            f"sampled softmax ({cfg.num_sampled_items} items per batch of {cfg.sampled_batch_size} windows)"
            if self.sampled_softmax
            else cfg.loss,
        )
        self.history_ = []
        # fork_rng: seed init/dropout without touching the caller's global RNG.
        with torch.random.fork_rng(), _torch_threads(cfg.num_threads):
            torch.manual_seed(cfg.seed)
            generator = torch.Generator().manual_seed(cfg.seed)
            self.model = self.encoder_class(num_items, cfg)
            optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate)
            best_auc, best_state, epochs_without_gain = -math.inf, None, 0
            bar = tqdm(range(cfg.epochs), desc=f"{type(self).__name__} epochs", disable=not cfg.show_progress)
            for epoch in bar:
                loss = self._train_epoch(inputs, targets, optimizer, generator)
                record = {"epoch": epoch + 1, "loss": loss}
                if validation is not None:
                    record["validation_auc"] = self.catalogue_auc(validation)
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
        batch_size = self.config.sampled_batch_size if self.sampled_softmax else self.config.batch_size
        for batch in torch.randperm(len(inputs), generator=generator).split(batch_size):
            width = int((inputs[batch] != PAD).sum(1).max())  # drop columns that are padding in the whole batch
            hidden, target = self.model(inputs[batch][:, -width:]), targets[batch][:, -width:]
            real = target != PAD
            item_embeddings = self.model.item_embedding.weight
            if self.sampled_softmax:
                loss = self._sampled_softmax_loss(hidden[real], target[real], generator)
            elif self.config.loss == "ce":
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

    def _sampled_softmax_loss(self, hidden, target, generator) -> torch.Tensor:
        """Cross-entropy of each target against itself plus `num_sampled_items` items drawn uniformly over the
        trainable vocabulary and shared by the batch (a draw equal to the row's target is masked out). Uniform
        draws need no log-Q correction, except for UNKNOWN, which is drawn as often as the items merged into it
        and so stands for all of them, as in the full softmax: its logit is lowered by ``log(num_merged_items)``."""
        num_items = self.model.item_embedding.num_embeddings
        negatives = torch.randint(
            BOS + 1, num_items + self.num_merged_items, (self.config.num_sampled_items,), generator=generator
        )
        negatives[negatives >= num_items] = UNKNOWN
        item_embeddings = self.model.item_embedding.weight
        positive = (hidden * item_embeddings[target]).sum(-1, keepdim=True)
        sampled = (hidden @ item_embeddings[negatives].T).masked_fill(negatives[None] == target[:, None], -torch.inf)
        logits = torch.cat([positive, sampled], dim=1)
        if self.num_merged_items:
            ids = torch.cat([target[:, None], negatives[None].expand(len(target), -1)], dim=1)
            logits = logits - math.log(self.num_merged_items) * (ids == UNKNOWN)
        return nn.functional.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long))

    def _encode_last(self, histories: list[list[int]]) -> torch.Tensor:
        """The hidden state after each history (``[BOS] + history``), encoded in batches."""
        out = []
        for start in range(0, len(histories), self.config.score_batch_size):
            chunk = [[BOS, *h] for h in histories[start : start + self.config.score_batch_size]]
            out.append(self.model(self._left_pad(chunk))[:, -1])
        return torch.cat(out)

    @torch.no_grad()
    def catalogue_auc(self, examples) -> float:
        """Mean over the positive rows of the share of catalogue items the model ranks below the positive, among the
        items not in the row's history (ties count half); cold positives are skipped."""
        self.model.eval()
        rows = [
            (self._ids(h), self.item_index[c])
            for h, c, y in zip(examples["history"], examples["candidate"], examples["label"])
            if y == 1 and c in self.item_index
        ]
        if not rows:
            return float("nan")
        with _torch_threads(self.config.num_threads):
            logits = self._encode_last([h for h, _ in rows]) @ self.model.item_embedding.weight.T
        shares = []
        for (history, target), row in zip(rows, logits):
            excluded = torch.zeros(len(row), dtype=torch.bool)
            excluded[[PAD, UNKNOWN, BOS, target, *history]] = True
            others = row[~excluded]
            below = (others < row[target]).sum() + 0.5 * (others == row[target]).sum()
            shares.append(float(below) / max(len(others), 1))
        return float(np.mean(shares))

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
        last = self._encode_last([self._ids(h) for h in histories])
        hidden = last[torch.tensor(row_history, dtype=torch.long)]
        scores = (hidden * embeddings[candidates]).sum(-1)
        if self.config.loss == "ce":
            logits = last @ embeddings.T
            logits[:, self._never_targets()] = -torch.inf
            scores -= torch.logsumexp(logits, dim=-1)[torch.tensor(row_history, dtype=torch.long)]
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
