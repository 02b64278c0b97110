"""What the collaborative tokens can carry: simple fixed scorers over the SASRec item table alone, on the MovieLens test
candidates (no LLM). If a plain function of the history's and the candidate's item vectors already ranks like SASRec,
the tokens hold the information and what limits an LLM row is reading it; if not, the table without SASRec's sequence
encoder cannot reach SASRec, and a user-state token is the next design.

    python experiments/probe_collaborative_table.py --adapter runs/movielens/sft-title-collab \
        --data_dir ../shared/data/movielens-100k-posters

Scorers (higher = more likely): the candidate vector's norm (what the table says of popularity); its dot product with
the last history item's vector; with the mean of the history's vectors; and that plus the norm, with the sign the norm
shows alone.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="Adapter folder with collaborative.safetensors.")
    parser.add_argument("--data_dir", required=True, help="The MovieLens-format folder it was trained on.")
    args = parser.parse_args(argv)
    from safetensors import safe_open

    from hf_mllm_msr.data.loading import load_msr_dataset
    from hf_mllm_msr.evaluation.metrics import ranking_metrics
    from hf_mllm_msr.recommendation.collaborative import UNKNOWN_ROW
    from hf_mllm_msr.recommendation.scoring import COLLABORATIVE_FILE

    with safe_open(f"{args.adapter}/{COLLABORATIVE_FILE}", framework="np") as f:
        table, item_ids = f.get_tensor("item_table"), json.loads(f.metadata()["item_ids"])
    row = {item: i for i, item in enumerate(item_ids) if item is not None}
    protocol = json.loads(open(f"{args.adapter}/msr_config.json").read())["protocol"]
    options = {k: v for k, v in protocol.items() if k not in ("dataset", "data_dir")}
    test = load_msr_dataset(protocol["dataset"], "examples", data_dir=args.data_dir, **options)["test"]
    vec = lambda item: table[row.get(item, UNKNOWN_ROW)]  # noqa: E731
    candidates = np.stack([vec(c) for c in test["candidate"]])
    last = np.stack([vec(h[-1]) for h in test["history"]])
    mean = np.stack([np.mean([vec(i) for i in h], axis=0) for h in test["history"]])
    norm = np.linalg.norm(candidates, axis=1)
    scorers = {
        "candidate norm": norm,
        "last item . candidate": (last * candidates).sum(1),
        "history mean . candidate": (mean * candidates).sum(1),
    }
    labels, users = np.asarray(test["label"]), np.asarray(test["user_id"])
    # fixed combinations (standardized, no fitting on test): the norm enters with the sign it shows alone
    z = lambda s: (s - s.mean()) / s.std()  # noqa: E731
    sign = 1.0 if ranking_metrics(norm, labels, users, ks=(10,))["auc"] >= 0.5 else -1.0
    scorers["history mean . cand +- norm"] = z(scorers["history mean . candidate"]) + sign * z(norm)
    for name, scores in scorers.items():
        result = ranking_metrics(scores, labels, users, ks=(10,))
        print(f"{name:28s} AUC {result['auc']:.3f}  user AUC {result['user_auc']:.3f}  HR@10 {result['hr@10']:.3f}")


if __name__ == "__main__":
    main()
