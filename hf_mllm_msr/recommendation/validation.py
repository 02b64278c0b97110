"""Validation during SFT: the validation users' candidates scored with the shared-prefix scorer, so the trainer's log
holds ``eval_auc`` / ``eval_user_auc`` next to the loss."""

from __future__ import annotations

import logging

import numpy as np
from transformers import TrainerCallback

from .recommender import MsrRecommender

logger = logging.getLogger(__name__)


class ValidationAucCallback(TrainerCallback):
    """Scores the validation candidates with the shared-prefix scorer at every evaluation and at the end of
    training, and logs ``eval_auc`` / ``eval_user_auc`` into the trainer's log history."""

    def __init__(self, examples, items, *, mode, item_summaries=None, user_summaries=None, **scorer_options):
        """``scorer_options``: :class:`~hf_mllm_msr.recommendation.scoring.YesNoScorer` options as at training time
        (``RecommenderConfig.scorer_options()``: ``max_user_tokens``, ``candidate_text``, ``item_text``)."""
        self.examples, self.items, self.mode = examples, items, mode
        self.item_summaries, self.user_summaries = item_summaries, user_summaries
        self.scorer_options = scorer_options
        self.last: dict = {}

    def compute(self, model, processing_class) -> dict:
        from ..evaluation.metrics import ranking_metrics

        was_training = model.training
        model.eval()
        recommender = MsrRecommender(model, processing_class, mode=self.mode, **self.scorer_options)
        scores = recommender.score_examples(
            self.examples,
            self.items,
            item_summaries=self.item_summaries,
            user_summaries=self.user_summaries,
            progress=False,
            on_missing="skip",
        )
        model.train(was_training)
        keep = ~np.isnan(scores)
        result = ranking_metrics(
            scores[keep], np.asarray(self.examples["label"])[keep], np.asarray(self.examples["user_id"])[keep], ks=(1,)
        )
        return {"eval_auc": float(result["auc"]), "eval_user_auc": float(result["user_auc"])}

    def _report(self, state, model, processing_class):
        if not state.is_world_process_zero or state.global_step == self.last.get("step"):
            return
        self.last = {**self.compute(model, processing_class), "step": state.global_step, "epoch": state.epoch}
        state.log_history.append(dict(self.last))
        logger.info(
            "validation at step %d: AUC %.4f, user AUC %.4f",
            state.global_step,
            self.last["eval_auc"],
            self.last["eval_user_auc"],
        )

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._report(state, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._report(state, model, processing_class)
