"""The baselines' scores for an evaluation: popularity, SASRec and GRU4Rec (:mod:`.baselines`) fitted on every
interaction of the protocol's training users, early-stopped (and optionally tuned) on its validation users, scoring the
same test rows as the adapters.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from ..data.loading import InsufficientDataError
from . import baselines

logger = logging.getLogger(__name__)

BASELINE_NAMES = ("popularity", "sasrec", "gru4rec")


def training_sequences(sequences, examples) -> list[list[str]]:
    """Every interaction of the training users in time order, minus each user's held-out targets.

    Args:
        sequences: the protocol's ``sequences`` (``user_id``, ``item_ids`` in time order).
        examples: the protocol's splits (``train`` and, if there, ``validation`` / ``test``). The training users are
            the users of the train rows (under the user split, nobody else; under leave-one-out, everyone); the
            positives of a user's validation and test rows are removed from that user's sequence.
    """
    train_users = set(examples["train"]["user_id"])
    held_out: dict[str, set] = defaultdict(set)
    for split in ("validation", "test"):
        if split in examples:
            rows = examples[split]
            for user, candidate, label in zip(rows["user_id"], rows["candidate"], rows["label"]):
                if label == 1:
                    held_out[user].add(candidate)
    out = []
    for user, items in zip(sequences["user_id"], sequences["item_ids"]):
        if user in train_users:
            kept = [item for item in items if item not in held_out[user]]
            if kept:
                out.append(kept)
    if not out:
        raise InsufficientDataError(f"none of the {len(train_users)} training users has an interaction to learn from")
    return out


class PopularityBaseline:
    """Scores a candidate by its number of interactions in the training sequences (unseen items score 0)."""

    def fit(self, sequences: list[list[str]], validation=None, catalogue=None) -> PopularityBaseline:
        self.item_counts = Counter(item for seq in sequences for item in seq)
        return self

    def score(self, examples) -> np.ndarray:
        return np.array([self.item_counts.get(item, 0) for item in examples["candidate"]], dtype=np.float64)


# Small grids for `tune=True`, chosen on the validation users' full-catalogue AUC (RecBole's defaults are in each grid).
TUNING_GRIDS = {
    "sasrec": [{"dropout": d, "num_blocks": b} for d in (0.2, 0.5) for b in (1, 2)],
    "gru4rec": [{"dropout": d, "gru_size": g} for d in (0.3, 0.5) for g in (64, 128)],
}


def score_baselines(
    names: Sequence[str], sequences, examples, test, *, catalogue=None, seed: int = 0, tune: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Fit each named baseline (``popularity``, ``sasrec``, ``gru4rec``) on every interaction of the protocol's
    training users (`training_sequences`), early-stopped on its validation users, and score every row of
    ``test``.

    Args:
        names: baselines to run.
        sequences: the protocol's ``sequences`` dataset.
        examples: the protocol's splits, whole (a compute limit such as the demo's ``max_users`` applies to the LLM
            stages only: the baselines are cheap and train on the whole train split).
        test: the rows to score (the split every model is scored on).
        catalogue: every item id (items never seen in training get embeddings of their own).
        seed: seed of the models.
        tune: pick each model's hyperparameters from `TUNING_GRIDS` on validation.

    Returns:
        ``(scores, info)``: scores of the baselines that could be fitted; per baseline, ``kind``, ``training_size``
        (users, interactions), the hyperparameters used, ``fit_seconds`` and ``fit_cpu_seconds`` (fit + score), or
        ``not_trained`` with the reason when the data cannot support it (`InsufficientDataError`; any other error is
        raised).
    """
    unknown = sorted(set(names) - set(BASELINE_NAMES))
    if unknown:
        raise ValueError(f"Unknown baseline(s) {unknown}; choose from {list(BASELINE_NAMES)}.")
    validation = examples["validation"] if "validation" in examples and len(examples["validation"]) else None
    scores, info = {}, {}
    try:
        train = training_sequences(sequences, examples)
    except InsufficientDataError as error:
        return {}, {name: {"kind": "baseline", "not_trained": str(error)} for name in names}
    size = {"users": len(train), "interactions": sum(map(len, train))}
    for name in names:
        info[name] = {"kind": "baseline", "training_size": size}
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            if name == "popularity":
                model = PopularityBaseline().fit(train)
            else:
                model_class = baselines.SASRec if name == "sasrec" else baselines.GRU4Rec
                candidates = TUNING_GRIDS[name] if tune and validation is not None else [{}]
                fitted = []
                for overrides in candidates:
                    config = model_class.config_class(seed=seed, show_progress=False, **overrides)
                    fitted.append(model_class(config).fit(train, validation, catalogue=catalogue))
                best = [m.catalogue_auc(validation) if validation is not None else 0.0 for m in fitted]
                model = fitted[int(np.nanargmax(best))] if len(fitted) > 1 else fitted[0]
                info[name]["config"] = asdict(model.config)
                info[name]["epochs_trained"] = len(model.history_)
                info[name]["sampled_softmax"] = model.sampled_softmax  # past config.full_softmax_max_items
                if tune:
                    info[name]["tuning"] = [{**c, "validation_auc": a} for c, a in zip(candidates, best)]
            logger.info(
                "Baseline %s trained on %d users (%d interactions).", name, size["users"], size["interactions"]
            )
            scores[name] = np.asarray(model.score(test), dtype=np.float64)
        except InsufficientDataError as error:
            logger.warning("Baseline %s not trained: %s.", name, error)
            info[name]["not_trained"] = str(error)
        info[name]["fit_seconds"] = round(time.perf_counter() - start, 1)  # fit + score, wall clock
        info[name]["fit_cpu_seconds"] = round(time.process_time() - start_cpu, 1)  # every thread of this process
    return scores, info
