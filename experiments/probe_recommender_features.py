"""Diagnostic (not a speed benchmark): does the frozen recommender already "see" whether a candidate fits a user?

The text recommender of `recipes/smollm2-135m/sft/config_cpu.yaml` stays at chance after its LoRA SFT although the
user summaries name the users' taste (word-match AUC above 0.7 on the test candidates). This script asks whether the
frozen SmolLM2-135M-Instruct exposes a match signal that a few LoRA steps could read out: it runs the SFT prompts
(user summary + candidate, exactly as training builds them) through the frozen model and fits a logistic-regression
probe on the hidden states, per layer, of
- the answer position (the last prompt token, where the Yes/No logits are read), and
- the candidate's tokens, mean-pooled.
Layer, features and regularisation are chosen by 5-fold cross-validation on the train rows; the chosen probe is then
scored once on the test candidates, next to the word-match AUC of the same summaries.

Measured (2 cores, 2026-11-30, the recipes' summaries: 320 train rows, 420 test rows, 274 s): cross-validated
probe AUC at most 0.490 on the train rows (no readable signal; below 0.5 is the usual small-sample CV bias), test
AUC of the chosen probe (candidate tokens, layer 12) 0.543, against word-match 0.722. So the match is not a linear
read-out of the frozen model: LoRA has to build it, which 40-160 CPU steps did not (ratio 0.19). The last line is
`ratio=<(probe AUC - 0.5) / (word-match AUC - 0.5)>`, the share of the summaries' signal the frozen model exposes.

    python experiments/probe_recommender_features.py \
        --item_summaries runs/synthetic/summaries/item_summaries --user_summaries runs/synthetic/summaries/user_summaries
"""

from __future__ import annotations

import argparse
import time

LAYERS = (6, 12, 18, 24, 30)
PROTOCOL = dict(num_users=200, num_items=120, world_seed=0, split="user", history_policy="recent", max_history=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--item_summaries", required=True, help="save_to_disk folder of the summarize recipe.")
    parser.add_argument("--user_summaries", required=True, help="save_to_disk folder of the summarize recipe.")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Base model of the recommender.")
    parser.add_argument("--max_user_tokens", type=int, default=256, help="As in the SFT recipe.")
    args = parser.parse_args()

    import datasets
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_mllm_msr import load_msr_dataset
    from hf_mllm_msr.data.schema import history_key
    from hf_mllm_msr.models.offline import resolve_model_path
    from hf_mllm_msr.recommendation.examples import build_sft_dataset

    start = time.perf_counter()
    items = load_msr_dataset("synthetic", "items", **PROTOCOL)
    examples = load_msr_dataset("synthetic", "examples", **PROTOCOL)
    item_summaries = datasets.load_from_disk(args.item_summaries)
    user_summaries = datasets.load_from_disk(args.user_summaries)
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"  # the answer position is the last column of every row
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def features(split):
        rows = build_sft_dataset(
            examples[split],
            items,
            mode="summary",
            item_summaries=item_summaries,
            user_summaries=user_summaries,
            tokenizer=tokenizer,
            max_user_tokens=args.max_user_tokens,
        )
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in rows["prompt"]]
        pooled, last = [], []
        for i in range(0, len(texts), 16):
            chunk = texts[i : i + 16]
            batch = tokenizer(chunk, return_tensors="pt", padding=True, return_offsets_mapping=True)
            offsets = batch.pop("offset_mapping")
            with torch.no_grad():
                hidden = model(**batch, output_hidden_states=True).hidden_states
            mask = torch.zeros(batch["input_ids"].shape)
            for r, text in enumerate(chunk):  # the candidate: from "Candidate item:" to the end of the user turn
                lo = text.index("Candidate item:")
                hi = text.index("<|im_end|>", lo)
                mask[r] = (offsets[r, :, 0] >= lo) & (offsets[r, :, 1] <= hi) & (offsets[r, :, 1] > 0)
            weights = mask[..., None] / mask.sum(1)[:, None, None]
            pooled.append(torch.stack([(hidden[layer] * weights).sum(1) for layer in LAYERS], 1).numpy())
            last.append(torch.stack([hidden[layer][:, -1] for layer in LAYERS], 1).numpy())
        labels = np.array([1 if c[0]["content"] == "Yes" else 0 for c in rows["completion"]])
        return {"pooled": np.concatenate(pooled), "last": np.concatenate(last)}, labels

    train, y_train = features("train")
    test, y_test = features("test")
    best = None
    for kind in ("last", "pooled"):
        for index, layer in enumerate(LAYERS):
            for c in (0.001, 0.01, 0.1):
                probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
                folds = StratifiedKFold(5, shuffle=True, random_state=0)
                cv = cross_val_predict(probe, train[kind][:, index], y_train, cv=folds, method="decision_function")
                cv_auc = roc_auc_score(y_train, cv)
                print(f"{kind:6s} layer {layer:2d} C={c:<5}: cross-validated train AUC {cv_auc:.3f}")
                if best is None or cv_auc > best[0]:
                    best = (cv_auc, kind, index, c)
    cv_auc, kind, index, c = best
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(train[kind][:, index], y_train)
    probe_auc = roc_auc_score(y_test, probe.decision_function(test[kind][:, index]))

    test_rows = examples["test"]
    colour, category = dict(zip(items["item_id"], items["color"])), dict(zip(items["item_id"], items["category"]))
    summary_of = dict(zip(user_summaries["history_key"], user_summaries["summary"]))
    words = [summary_of[history_key(h)] for h in test_rows["history"]]
    word_scores = [2 * (colour[c] in w) + (category[c] in w) for c, w in zip(test_rows["candidate"], words)]
    word_auc = roc_auc_score(test_rows["label"], word_scores)
    print(
        f"chosen probe: {kind} layer {LAYERS[index]} C={c} (cross-validated {cv_auc:.3f}); test AUC {probe_auc:.3f}; "
        f"word-match AUC of the same summaries {word_auc:.3f} ({time.perf_counter() - start:.0f} s)"
    )
    print(f"ratio={(probe_auc - 0.5) / (word_auc - 0.5):.2f}")


if __name__ == "__main__":
    main()
