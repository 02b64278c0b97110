"""`evaluate` metric module wrapping `hf_mllm_msr.evaluation.metrics.ranking_metrics` (AUC, HR/NDCG/MRR@K per user).

Loaded by path, with no Hub access: ``hf_mllm_msr.evaluation.metrics.load_evaluate_metric("msr_ranking")``.
(One import per line: evaluate's import scanner misreads ``import a, b``.)
"""

import datasets
import evaluate

from hf_mllm_msr.evaluation.metrics import ranking_metrics

_DESCRIPTION = """
Ranking metrics for the MLLM-MSR protocol (1 positive + N sampled negatives per user): global AUC (as in the paper),
per-user AUC averaged over users, and HR@K, NDCG@K, MRR@K. Tied scores are broken uniformly at random in expectation
(1/2 per tied pair in AUC, identical to scikit-learn's roc_auc_score).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): one score per (user, candidate) row, higher = more likely.
    references (`list` of `int`): 1 for the positive candidate, 0 for a negative.
    user_ids (`list` of `str`): the user of each row; rows of a user need not be contiguous.
    ks (`tuple` of `int`, defaults to (3, 5, 10)): the cut-offs K.
Returns:
    dict with `auc`, `user_auc`, `hr@K`, `ndcg@K`, `mrr@K`, `num_users`, `num_rows`, `num_users_one_class`.
Examples:
    >>> metric = hf_mllm_msr.evaluation.metrics.load_evaluate_metric("msr_ranking")
    >>> metric.compute(predictions=[0.9, 0.1, 0.5, 0.5], references=[1, 0, 1, 0], user_ids=["a", "a", "b", "b"])["auc"]
    0.875
"""

_CITATION = """
@inproceedings{ye2025mllmmsr,
  title={Harnessing Multimodal Large Language Models for Multimodal Sequential Recommendation},
  author={Ye, Yuyang and Zheng, Zhi and Shen, Yishan and Wang, Tianshu and Zhang, Hengruo and Zhu, Peijun and Yu, Runlong and Zhang, Kai and Xiong, Hui},
  booktitle={AAAI},
  year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MsrRanking(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float64"),
                    "references": datasets.Value("int64"),
                    "user_ids": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions, references, user_ids, ks=(3, 5, 10)):
        return ranking_metrics(predictions, references, user_ids, ks=ks)
