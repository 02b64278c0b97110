"""ID-based baselines: they learn a sequential pattern popularity cannot see, deterministically, without crashing on
unknown items."""

import random

import datasets
import numpy as np
import pytest
import torch

from hf_mllm_msr.data.loading import InsufficientDataError
from hf_mllm_msr.evaluation.baseline_scoring import PopularityBaseline, training_sequences
from hf_mllm_msr.evaluation.baselines import GRU4Rec, SASRec, windows
from hf_mllm_msr.evaluation.encoders import BOS, PAD, GRU4RecConfig, SASRecConfig, SASRecEncoder
from hf_mllm_msr.evaluation.metrics import ranking_metrics

# Small and fast: ~1-3 s per fit on one core.
FAST = {
    "hidden_size": 32,
    "max_len": 16,
    "epochs": 12,
    "learning_rate": 5e-3,
    "batch_size": 32,
    "dropout": 0.2,
    "show_progress": False,
}


def sequential_examples(
    num_users=200, num_items=40, num_test_negatives=20, rare_items_per_user=0, cold_test_negatives=False, seed=0
) -> tuple[datasets.DatasetDict, datasets.Dataset]:
    """Every user walks the catalogue in order (item i is followed by item i+1, modulo the catalogue) from a random
    start: each item is about equally popular, so only the sequence reveals the next item. Leave-one-out splits in the
    examples schema; negatives are items the user never interacted with.

    rare_items_per_user: items only this user ever sees, inserted at random early positions of their walk.
    cold_test_negatives: test negatives are items that exist nowhere else (cold-start candidates).

    Returns the examples and the users' whole sequences (the protocol's ``sequences``).
    """
    rng = random.Random(seed)
    splits = {"train": [], "validation": [], "test": []}
    sequences = {"user_id": [], "item_ids": []}
    for user in range(num_users):
        start, walk_length = rng.randrange(num_items), rng.randint(6, 12)
        sequence = [f"item{(start + j) % num_items}" for j in range(walk_length)]
        for j in range(rare_items_per_user):
            sequence.insert(rng.randrange(walk_length - 3), f"rare{user}-{j}")
        length = len(sequence)
        sequences["user_id"].append(f"user{user}")
        sequences["item_ids"].append(list(sequence))
        pool = [f"item{i}" for i in range(num_items) if f"item{i}" not in sequence]
        for split, target_index, num_negatives in (
            ("train", length - 3, 1),
            ("validation", length - 2, 1),
            ("test", length - 1, num_test_negatives),
        ):
            negatives = rng.sample(pool, num_negatives)
            if split == "test" and cold_test_negatives:
                negatives = [f"cold{user}-{j}" for j in range(num_negatives)]
            rows = [(sequence[target_index], 1)] + [(item, 0) for item in negatives]
            for candidate, label in rows:
                splits[split].append(
                    {
                        "user_id": f"user{user}",
                        "history": sequence[:target_index],
                        "candidate": candidate,
                        "label": label,
                    }
                )
    examples = datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})
    return examples, datasets.Dataset.from_dict(sequences)


@pytest.fixture(scope="module")
def world():
    return sequential_examples()


@pytest.fixture(scope="module")
def examples(world):
    return world[0]


@pytest.fixture(scope="module")
def train(world):
    return training_sequences(world[1], world[0])


def auc_of(model, split):
    return ranking_metrics(model.score(split), split["label"], split["user_id"])["auc"]


@pytest.fixture(scope="module")
def popularity_auc(examples, train):
    return auc_of(PopularityBaseline().fit(train), examples["test"])


@pytest.mark.parametrize(
    "model_class,config",
    [
        (SASRec, SASRecConfig(loss="bce", **FAST)),
        (SASRec, SASRecConfig(**FAST)),
        (GRU4Rec, GRU4RecConfig(**FAST)),
    ],
    ids=["sasrec-bce", "sasrec-ce", "gru4rec-ce"],
)
def test_learns_sequential_pattern_above_popularity(examples, train, popularity_auc, model_class, config):
    model = model_class(config).fit(train, examples["validation"])
    auc = auc_of(model, examples["test"])
    assert popularity_auc < 0.6  # uniform popularity: the pattern is invisible to it
    assert auc > 0.9 and auc > popularity_auc + 0.25, (auc, popularity_auc)
    assert [r["epoch"] for r in model.history_] == list(range(1, len(model.history_) + 1))


# A catalogue "larger" than 10 items: the next-item models train with a sampled softmax of 8 items per batch.
SAMPLED = {"full_softmax_max_items": 10, "num_sampled_items": 8}


@pytest.mark.parametrize(
    "model_class,config_class", [(SASRec, SASRecConfig), (GRU4Rec, GRU4RecConfig)], ids=["sasrec", "gru4rec"]
)
def test_sampled_softmax_learns_sequential_pattern(examples, train, popularity_auc, model_class, config_class):
    model = model_class(config_class(**FAST, **SAMPLED)).fit(train, examples["validation"])
    assert model.sampled_softmax
    auc = auc_of(model, examples["test"])
    assert auc > 0.9 and auc > popularity_auc + 0.25, (auc, popularity_auc)


def test_full_softmax_up_to_full_softmax_max_items(examples, train):
    # 40 items + 3 special ids: the full softmax by default (ML-100K's 1.7 k items too), the same model as with the
    # sampled softmax switched off; sampled once the vocabulary is larger than the threshold
    config = SASRecConfig(**{**FAST, "epochs": 2})
    default = SASRec(config).fit(train)
    assert not default.sampled_softmax
    never = SASRec(SASRecConfig(**{**FAST, "epochs": 2, "full_softmax_max_items": 0})).fit(train)
    np.testing.assert_array_equal(default.score(examples["test"]), never.score(examples["test"]))
    assert SASRec(SASRecConfig(**{**FAST, "epochs": 1, "full_softmax_max_items": 42})).fit(train).sampled_softmax
    assert not SASRec(SASRecConfig(**{**FAST, "epochs": 1, "full_softmax_max_items": 43})).fit(train).sampled_softmax
    assert not SASRec(SASRecConfig(**{**FAST, "epochs": 1, "loss": "bce", **SAMPLED})).fit(train).sampled_softmax


@pytest.mark.parametrize("loss", ["bce", "ce", "sampled"])
def test_cold_candidates_score_like_one_rare_item(loss):
    # 4 rare items per user are merged into UNKNOWN (min_item_count 2): ~1/4 of all training targets. Scored as their
    # SUM, never-seen candidates would beat the true next item; scored as ONE rare item, they must lose to it.
    examples, sequences = sequential_examples(num_users=150, rare_items_per_user=4, cold_test_negatives=True)
    options = {"loss": "ce", **SAMPLED} if loss == "sampled" else {"loss": loss}
    model = SASRec(SASRecConfig(**options, min_item_count=2, **FAST))
    model.fit(training_sequences(sequences, examples), examples["validation"])
    assert model.num_merged_items == 150 * 4
    assert auc_of(model, examples["test"]) > 0.9
    if loss == "sampled":
        # The sampled softmax draws UNKNOWN for 600 of its 640 ids; its log-Q correction keeps the merged items' total
        # mass after a test history near the full softmax's (0.037; sampled 0.022, without the correction 0.0006).
        negatives = examples["test"].filter(lambda row: row["label"] == 0)  # cold: each scored as one merged item
        assert np.exp(model.score(negatives) + np.log(model.num_merged_items)).mean() > 0.01


def test_catalogue_items_never_seen_get_their_own_embedding_and_score_low():
    examples, sequences = sequential_examples(num_users=150, cold_test_negatives=True)
    catalogue = sorted({c for c in examples["test"]["candidate"]} | {i for s in sequences["item_ids"] for i in s})
    model = SASRec(SASRecConfig(**FAST)).fit(
        training_sequences(sequences, examples), examples["validation"], catalogue
    )
    assert model.num_merged_items == 0 and len(model.item_index) == len(catalogue)
    assert auc_of(model, examples["test"]) > 0.95  # cold negatives: trained as negatives only, they rank low


def test_training_data_is_every_interaction_without_held_out_targets():
    examples, sequences = sequential_examples(num_users=30)
    train = training_sequences(sequences, examples)
    assert sum(map(len, train)) == sum(len(s) - 2 for s in sequences["item_ids"])  # leave-one-out: all but 2 each
    by_user = dict(zip(sequences["user_id"], train))
    for split in ("validation", "test"):
        for user, candidate, label in zip(*(examples[split][c] for c in ("user_id", "candidate", "label"))):
            assert label == 0 or candidate not in by_user[user]  # no held-out target leaks into training
    # user split: the validation and test users are not trained on at all
    held = {"validation": examples["validation"].filter(lambda r: r["user_id"] in ("user0", "user1"))}
    user_split = {"train": examples["train"].filter(lambda r: r["user_id"] not in ("user0", "user1")), **held}
    assert len(training_sequences(sequences, user_split)) == 28
    with pytest.raises(InsufficientDataError, match="none of the 0 training users"):
        training_sequences(sequences, {"train": examples["train"].select([])})


def test_long_sequences_are_cut_into_windows_each_target_once():
    ids = list(range(10, 47))  # 37 items -> 37 targets, max_len 10
    cut = windows(ids, 10)
    assert all(len(inputs) == len(targets) <= 10 for inputs, targets in cut)
    trained = [t for _, targets in cut for t in targets if t != PAD]
    assert sorted(trained) == ids  # every target exactly once
    for inputs, targets in cut:
        for j, target in enumerate(targets):
            if target != PAD and target != ids[0]:
                assert inputs[j] == target - 1  # the item before it, within the window
    assert windows([5, 6], 10) == [([BOS, 5], [5, 6])]


def test_same_seed_same_scores(examples, train):
    config = GRU4RecConfig(**{**FAST, "epochs": 3})
    first = GRU4Rec(config).fit(train, examples["validation"]).score(examples["test"])
    second = GRU4Rec(config).fit(train, examples["validation"]).score(examples["test"])
    other_seed = GRU4Rec(GRU4RecConfig(**{**FAST, "epochs": 3, "seed": 1})).fit(train)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other_seed.score(examples["test"]))


def test_early_stopping_keeps_best_epoch(examples, train):
    # learning_rate 0: validation AUC never improves after epoch 1, so patience 2 stops after epoch 3.
    config = SASRecConfig(**{**FAST, "epochs": 10, "learning_rate": 0.0, "patience": 2})
    model = SASRec(config).fit(train, examples["validation"])
    assert len(model.history_) == 3
    # with learning: the kept weights are those of the best validation epoch
    model = SASRec(SASRecConfig(**{**FAST, "epochs": 6})).fit(train, examples["validation"])
    best = max(r["validation_auc"] for r in model.history_)
    assert model.catalogue_auc(examples["validation"]) == pytest.approx(best)


def test_unknown_items_and_empty_history_do_not_crash(examples, train):
    model = SASRec(SASRecConfig(**{**FAST, "epochs": 2})).fit(train)
    unseen = datasets.Dataset.from_list(
        [
            {"user_id": "new", "history": [], "candidate": "item1", "label": 1},
            {"user_id": "new", "history": ["never-seen"], "candidate": "also-never-seen", "label": 0},
            {"user_id": "new", "history": ["never-seen"], "candidate": "another-unknown", "label": 0},
            {"user_id": "new", "history": ["item3"] * 60, "candidate": "item4", "label": 0},  # longer than max_len
        ]
    )
    scores = model.score(unseen)
    assert scores.shape == (4,) and np.isfinite(scores).all()
    assert scores[1] == scores[2]  # both unknown candidates share the unknown embedding
    popularity = PopularityBaseline().fit(train).score(unseen)
    assert popularity[1] == 0.0 and popularity[0] > 0
    with pytest.raises(RuntimeError, match="before fit"):
        GRU4Rec().score(unseen)


@pytest.mark.parametrize("model_class,config_class", [(SASRec, SASRecConfig), (GRU4Rec, GRU4RecConfig)])
def test_scores_do_not_depend_on_batching(examples, train, model_class, config_class):
    # Padding differs between a row scored alone and in a batch of longer histories; the scores must not.
    model = model_class(config_class(**{**FAST, "epochs": 2, "score_batch_size": 7})).fit(train)
    test = examples["test"]
    together = model.score(test)
    one_by_one = np.concatenate([model.score(test.select([i])) for i in range(0, len(test), 97)])
    np.testing.assert_allclose(together[::97], one_by_one, rtol=1e-5, atol=1e-5)


def test_sasrec_is_causal():
    torch.manual_seed(0)
    encoder = SASRecEncoder(20, SASRecConfig(hidden_size=16, max_len=6, dropout=0.0)).eval()
    ids = torch.tensor([[0, 0, 2, 5, 6, 7]])  # left-padded
    changed = ids.clone()
    changed[0, -1] = 9
    with torch.no_grad():
        a, b = encoder(ids), encoder(changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])  # earlier positions never see the last item
    assert not torch.allclose(a[:, -1], b[:, -1])
    assert torch.isfinite(a).all()  # padding rows are not fully masked


def test_popularity_counts_every_training_interaction():
    sequences = datasets.Dataset.from_dict({"user_id": ["a", "b"], "item_ids": [["x", "y", "z", "w"], ["z", "y"]]})
    examples = {
        "train": datasets.Dataset.from_list(
            [
                {"user_id": "a", "history": ["x"], "candidate": "y", "label": 1},  # capped history: only 2 items
                {"user_id": "b", "history": ["z"], "candidate": "y", "label": 1},
            ]
        ),
        "test": datasets.Dataset.from_list(
            [{"user_id": "a", "history": ["x", "y", "z"], "candidate": "w", "label": 1}]
        ),
    }
    model = PopularityBaseline().fit(training_sequences(sequences, examples))
    assert model.item_counts == {"x": 1, "y": 2, "z": 2}  # w is a's test target: never counted
    test = datasets.Dataset.from_list(
        [{"user_id": "c", "history": [], "candidate": item, "label": 0} for item in ("y", "x", "q")]
    )
    np.testing.assert_array_equal(model.score(test), [2.0, 1.0, 0.0])


def test_config_validation():
    with pytest.raises(ValueError, match="loss"):
        SASRecConfig(loss="bpr")
    with pytest.raises(ValueError, match="num_sampled_items"):
        SASRecConfig(num_sampled_items=0)
