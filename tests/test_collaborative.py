"""Collaborative tokens: item placeholders become projected SASRec vectors, the user token SASRec's state and the score
token SASRec's own score of each candidate, packed equals unpacked, shared-prefix scores equal one forward per
candidate, a cold item gets a defined embedding, and training + saving + loading under another HOME round-trips (tiny
random Llama, CPU, offline)."""

import json

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_mllm_msr.evaluation.encoders import BOS, PAD, SASRecConfig, SASRecEncoder
from hf_mllm_msr.recommendation.collaborative import (
    ITEM_TOKEN,
    UNKNOWN_ROW,
    USER_TOKEN,
    add_collaborative_tokens,
    collaborative_embedding,
)
from hf_mllm_msr.recommendation.examples import build_group_dataset
from hf_mllm_msr.recommendation.packed_trainer import SharedPrefixCollator
from hf_mllm_msr.recommendation.packing import attention_rules
from hf_mllm_msr.recommendation.recommender import MsrRecommender
from hf_mllm_msr.recommendation.scoring import (
    COLLABORATIVE_FILE,
    SCORE_PROJECTOR_NAME,
    USER_PROJECTOR_NAME,
    YesNoScorer,
)
from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments
from hf_mllm_msr.recommendation.training import train_recommender
from hf_mllm_msr.testing import text as testing

NUM_ITEMS = 12


def _table(rows: int = NUM_ITEMS + 3, dim: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = [None, None, None] + [f"i{k}" for k in range(rows - 3)]  # SASRec's rows: PAD, UNKNOWN, BOS, then items
    return torch.randn(rows, dim, generator=generator), ids


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return testing.tiny_llama(tmp_path_factory.mktemp("collab") / "tiny_llama")


def _user_encoder(rows: int = NUM_ITEMS + 3, dim: int = 8):
    config = SASRecConfig(hidden_size=dim, inner_size=16, max_len=8, seed=0)
    torch.manual_seed(2)
    return SASRecEncoder(rows, config).eval()


TOKENS = ["items", "user", "score"]  # item tokens; + the user token; + the score token


def collaborative_model(base, tokens: str = "items"):
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    tokenizer = AutoTokenizer.from_pretrained(base)
    table, ids = _table()
    torch.manual_seed(1)
    encoder = _user_encoder() if tokens != "items" else None
    embedding = add_collaborative_tokens(
        model, tokenizer, table, ids, hidden_size=16, user_encoder=encoder, score_token=tokens == "score"
    )
    if tokens == "score":  # a fresh projector's output is tiny: make the score token move the logits clearly
        embedding.collaborative_score_projector.linear_2.weight.data *= 50
    return model, tokenizer


def test_placeholders_become_projected_item_vectors(base):
    model, tokenizer = collaborative_model(base)
    embedding = collaborative_embedding(model)
    assert embedding is not None and ITEM_TOKEN in tokenizer.get_vocab()
    ids = tokenizer([f"liked {ITEM_TOKEN} and {ITEM_TOKEN} then {ITEM_TOKEN}"], return_tensors="pt")["input_ids"]
    mapped = embedding.item_token_ids(ids, [["i3", "never-seen", "i0"]])
    positions = (ids[0] == embedding.placeholder_id).nonzero().flatten()
    assert mapped[0, positions].tolist() == [
        embedding.offset + 3 + 3,
        embedding.offset + UNKNOWN_ROW,
        embedding.offset + 3,
    ]
    out = embedding(mapped)
    expected = embedding.collaborative_projector(embedding.item_table[[6, UNKNOWN_ROW, 3]])
    torch.testing.assert_close(out[0, positions], expected)
    others = torch.ones_like(ids[0], dtype=torch.bool)
    others[positions] = False
    torch.testing.assert_close(out[0, others], embedding.token_embedding(ids[0, others]))
    with pytest.raises(ValueError, match="unmapped"):
        embedding(ids)
    with pytest.raises(ValueError, match="3 item tokens for 2 items"):
        embedding.item_token_ids(ids, [["i1", "i2"]])


def test_the_user_token_is_the_projected_sasrec_state_after_the_history(base):
    model, tokenizer = collaborative_model(base, "user")
    embedding = collaborative_embedding(model)
    assert embedding.user_token == USER_TOKEN and USER_TOKEN in tokenizer.get_vocab()
    text = f"liked {ITEM_TOKEN}{ITEM_TOKEN}{USER_TOKEN} then {ITEM_TOKEN}{USER_TOKEN}"
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    mapped = embedding.item_token_ids(ids, [["i3", "never-seen", "i0"]])
    users = (ids[0] == embedding.user_token_id).nonzero().flatten()
    # the dropout-free frozen SASRec encoder over [BOS] + the item rows right before each user token
    reference = _user_encoder()
    first = reference(torch.tensor([[BOS, 6, UNKNOWN_ROW]]))[:, -1]
    second = reference(torch.tensor([[PAD, PAD, BOS, 3]]))[:, -1]
    model.train()  # training mode must not make the user vector random
    out = embedding(mapped)
    expected = embedding.collaborative_user_projector(torch.cat([first, second]))
    torch.testing.assert_close(out[0, users], expected)
    assert not any(p.requires_grad for p in embedding.user_encoder.parameters())
    assert embedding.record()["user_token"] == USER_TOKEN


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_the_score_token_adds_sasrecs_own_score_to_each_candidate(base, loss):
    from hf_mllm_msr.evaluation.baselines import SASRec
    from hf_mllm_msr.recommendation.collaborative_sasrec import sasrec_scores, sasrec_tokens, token_layout

    items, _, sequences = _collaborative_world()
    train = [list(s) for s in sequences["item_ids"]]
    train[0] += ["rare", "rarer"]  # seen once: merged into UNKNOWN (min_item_count 2), scored as one of the two
    config = SASRecConfig(
        hidden_size=8, inner_size=16, max_len=8, epochs=2, min_item_count=2, loss=loss, show_progress=False
    )
    sasrec = SASRec(config).fit(train, catalogue=items["item_id"])
    table, item_ids, encoder, merged = sasrec_tokens(sasrec)
    assert merged == 2
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    embedding = add_collaborative_tokens(
        model, tokenizer, table, item_ids, hidden_size=16, user_encoder=encoder, score_token=True, merged_items=merged
    )
    i, u = ITEM_TOKEN, USER_TOKEN
    # row 0 holds an item before any user token and two groups (history, user token, candidates), as a packed row
    # may; row 1 a user with an empty history and a candidate SASRec never saw
    texts = [f"saw {i} then {i}{i}{u} so {i} or {i}; later {i}{u} so {i}", f"{u} so {i}"]
    ids = tokenizer(texts, return_tensors="pt", padding=True)["input_ids"]
    row_items = [["i0", "i2", "i4", "i6", "rare", "i3", "i8"], ["never-seen"]]
    mapped = embedding.item_token_ids(ids, row_items)
    cases = datasets.Dataset.from_dict(
        {"history": [["i2", "i4"], ["i2", "i4"], ["i3"], []], "candidate": ["i6", "rare", "i8", "never-seen"]}
    )
    expected = torch.tensor(sasrec.score(cases), dtype=torch.float32)  # SASRec's own scores of these rows

    layout = token_layout(mapped, embedding.offset, embedding.user_token_id)
    assert layout.histories == [[embedding.row_of("i2"), embedding.row_of("i4")], [embedding.row_of("i3")], []]
    assert layout.candidate_user.tolist() == [0, 0, 1, 2]
    states = torch.cat([sasrec._encode_last([sasrec._ids(h)]) for h in cases["history"]])
    rows = mapped[layout.is_candidate] - embedding.offset
    scores = sasrec_scores(states, embedding.item_table, loss=loss, merged_items=merged)
    torch.testing.assert_close(scores[torch.arange(4), rows], expected)

    out = embedding(mapped)
    is_item = mapped >= embedding.offset
    items_only = embedding.collaborative_projector(embedding.item_table[mapped[is_item] - embedding.offset])
    candidate = layout.is_candidate[is_item]
    assert candidate.tolist() == [False, False, False, True, True, False, True, True]
    torch.testing.assert_close(out[is_item][~candidate], items_only[~candidate])  # the history and stray items
    with_score = items_only[candidate] + embedding.collaborative_score_projector(expected[:, None])
    torch.testing.assert_close(out[is_item][candidate], with_score)
    assert (out[is_item][candidate] - items_only[candidate]).abs().max() > 1e-4  # the score token adds something
    assert embedding.record()["score_projector"] == SCORE_PROJECTOR_NAME


def test_a_title_cannot_forge_an_item_token(base):
    """Data fields are cleaned before the placeholders are added: a title holding the token string gives none."""
    model, tokenizer = collaborative_model(base)
    scorer = YesNoScorer(model, tokenizer, mode="title")
    forged = {"item_id": "i1", "title": f"Evil {ITEM_TOKEN} {ITEM_TOKEN}"}
    enc = scorer._encode(f"The user recently interacted with: A {ITEM_TOKEN}.", [forged], history_items=["i2"])
    assert int((enc["input_ids"] >= collaborative_embedding(model).offset).sum()) == 2  # one history + one candidate


@pytest.mark.parametrize("tokens", TOKENS)
def test_shared_prefix_scores_equal_one_forward_per_candidate(base, tokens):
    model, tokenizer = collaborative_model(base, tokens)
    scorer = YesNoScorer(model, tokenizer, mode="title")
    user = "The user recently interacted with: item 1; item 2; item 3."
    candidates = [{"item_id": f"i{k}", "title": f"item {k}"} for k in (4, 5, 6)] + [{"item_id": "cold", "title": "x"}]
    shared = scorer.score(user, candidates, batch_size=3, history_items=["i1", "i2", "i3"])
    naive = scorer.score_naive(user, candidates, history_items=["i1", "i2", "i3"])
    np.testing.assert_allclose(shared, naive, atol=1e-5)
    # the tokens change the scores (the same text with other history items scores differently)
    other = scorer.score(user, candidates, batch_size=3, history_items=["i7", "i8", "i9"])
    assert not np.allclose(shared, other, atol=1e-4)
    if tokens == "score":  # and the score token changes them: both paths above did carry it
        torch.nn.init.zeros_(collaborative_embedding(model).collaborative_score_projector.linear_2.weight)
        without = scorer.score(user, candidates, batch_size=3, history_items=["i1", "i2", "i3"])
        assert not np.allclose(shared, without, atol=1e-4)


@pytest.mark.parametrize("tokens", TOKENS)
def test_packed_logits_equal_unpacked_rows(base, tokens):
    model, tokenizer = collaborative_model(base, tokens)
    items = datasets.Dataset.from_dict(
        {"item_id": [f"i{k}" for k in range(NUM_ITEMS)], "title": [f"film {k}" for k in range(NUM_ITEMS)]}
    )
    examples = datasets.Dataset.from_dict(
        {"user_id": ["u1"] * 3, "history": [["i1", "i2"]] * 3, "candidate": ["i3", "i4", "i5"], "label": [1, 0, 0]}
    )
    groups = build_group_dataset(examples, items, mode="title", history_items=True)
    assert groups[0]["history_items"] == ["i1", "i2"]
    collator = SharedPrefixCollator(tokenizer, "title", attention_rules(model), items=collaborative_embedding(model))
    batch = collator([groups[0]])
    answer_mask = batch.pop("answer_mask")
    for key in ("answer_labels", "answer_groups", "answer_weights", "branch_layout"):
        batch.pop(key)
    with torch.no_grad():
        packed = model(**batch).logits[answer_mask]
        scorer = YesNoScorer(model, tokenizer, mode="title", shared_prefix=False)
        for row, candidate in enumerate(groups[0]["candidates"]):
            enc = scorer._encode(groups[0]["user_text"], [candidate], history_items=["i1", "i2"])
            torch.testing.assert_close(packed[row], model(**enc).logits[0, -1], atol=1e-4, rtol=1e-4)


def _collaborative_world():
    """Titles say nothing ("film k"); who likes what is in the interaction logs only: even users take even items."""
    items = datasets.Dataset.from_dict(
        {"item_id": [f"i{k}" for k in range(NUM_ITEMS)], "title": ["film"] * NUM_ITEMS, "text": [""] * NUM_ITEMS}
    )
    rng = np.random.default_rng(0)
    sequences, splits = {"user_id": [], "item_ids": []}, {}
    for split, users in (("train", range(16)), ("validation", range(16, 20))):
        rows = {"user_id": [], "history": [], "candidate": [], "label": []}
        for u in users:
            own = [f"i{k}" for k in range(u % 2, NUM_ITEMS, 2)]
            sequence = [own[k] for k in rng.permutation(len(own))]
            sequences["user_id"].append(f"u{u}")
            sequences["item_ids"].append(sequence)
            others = [f"i{k}" for k in range(1 - u % 2, NUM_ITEMS, 2)]
            for candidate, label in [(sequence[-1], 1)] + [(c, 0) for c in others[:3]]:
                rows["user_id"].append(f"u{u}")
                rows["history"].append(sequence[:-1][-4:])
                rows["candidate"].append(candidate)
                rows["label"].append(label)
        splits[split] = datasets.Dataset.from_dict(rows)
    return items, datasets.DatasetDict(splits), datasets.Dataset.from_dict(sequences)


@pytest.mark.parametrize("tokens", TOKENS)
def test_training_saves_and_reloads_under_another_home(base, tmp_path, monkeypatch, tokens):
    from trl import ModelConfig

    user_token, score_token = tokens != "items", tokens == "score"
    items, examples, sequences = _collaborative_world()
    script = MsrSftArguments(
        dataset_name="toy",
        mode="title",
        packing_mode="shared_prefix",
        collaborative_tokens=True,
        collaborative_user_token=user_token,
        collaborative_score_token=score_token,
        collaborative_hidden_size=16,
        max_eval_users=4,
        # the user-token run also takes the real-data options: SASRec without the tails, windows of 2 positives there
        collaborative_holdout=0.5 if user_token else 0.0,
        history_windows=2 if user_token else 0,
        window_positives=2,
    )
    training = testing.cpu_sft_config(tmp_path / "adapter", max_steps=6)
    model_args = ModelConfig(model_name_or_path=base, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    out = train_recommender(script, training, model_args, items=items, examples=examples, sequences=sequences)
    folder = tmp_path / "adapter"
    assert (folder / COLLABORATIVE_FILE).exists()
    record = json.loads((folder / "msr_config.json").read_text())["collaborative_tokens"]
    assert (
        record["file"] == COLLABORATIVE_FILE and record["items"] == NUM_ITEMS and record["projector_hidden_size"] == 16
    )
    # no path of this machine in any published file, though the adapter was written outside the working directory
    # (but for the base model's own name: this test's base is a local folder)
    for published in [*folder.glob("*.json"), *folder.glob("*.yaml"), *folder.glob("*.md")]:
        text = published.read_text().replace(base, "")
        assert not any(root in text for root in ("/tmp", "/root", "/home")), (published.name, text[:2000])
    from hf_mllm_msr.publishing.cards import render_model_card

    results = {"protocol": {}, "num_users": 4, "num_rows": 16, "bootstrap": {"alpha": 0.05}, "ks": [10]}
    results["models"] = {
        "adapter": {"kind": "adapter", "group": "in-domain", "metrics": {"auc": 0.5}, "ci": {"auc": [0.4, 0.6]}}
    }
    msr_config = json.loads((folder / "msr_config.json").read_text())
    card = str(render_model_card({}, results, msr_config=msr_config, base_model="base", dataset_name="toy"))
    assert (
        f"SASRec trained on the same\n  train split ({NUM_ITEMS} items, {record['dim']} dimensions, in `{COLLABORATIVE_FILE}`)"
        in card
    )
    assert 'history_items=["10", "11"]' in card  # the card's example passes the history's item ids
    assert ("**User token:**" in card) == user_token and ("**Score token:**" in card) == score_token
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert any("collaborative_projector" in key for key in keys)  # the trained projector is in the adapter
    assert any(USER_PROJECTOR_NAME in key for key in keys) == user_token
    assert any(SCORE_PROJECTOR_NAME in key for key in keys) == score_token
    assert record["user_token"] == (USER_TOKEN if user_token else None)
    assert record["score_token"] == score_token
    assert record["score_projector"] == (SCORE_PROJECTOR_NAME if score_token else None)

    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    recommender = MsrRecommender.from_pretrained(out)
    embedding = collaborative_embedding(recommender.model)
    assert embedding is not None and embedding.item_table.shape[0] == NUM_ITEMS + 3
    assert (embedding.user_encoder is not None) == user_token and embedding.score_token == score_token
    # the loaded projector is the trained one, not a fresh random one
    fresh, _ = collaborative_model(base)
    assert not torch.allclose(
        embedding.collaborative_projector.linear_2.weight,
        collaborative_embedding(fresh).collaborative_projector.linear_2.weight,
    )
    if score_token:  # and so is the score projector: every weight, and its input scale, as the adapter holds it
        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
            for name, value in embedding.collaborative_score_projector.state_dict().items():
                (key,) = [k for k in keys if k.endswith(f"{SCORE_PROJECTOR_NAME}.{name}")]
                torch.testing.assert_close(value, f.get_tensor(key))
    scores = recommender.score_examples(examples["validation"], items, progress=False)
    assert scores.shape == (16,) and np.all((scores > 0) & (scores < 1))
    again = MsrRecommender.from_pretrained(out).score_examples(examples["validation"], items, progress=False)
    np.testing.assert_allclose(scores, again, atol=1e-6)

    # the recommend pipeline scores with the tokens when given the loaded model, and says how when given the folder
    from transformers import pipeline

    import hf_mllm_msr  # noqa: F401  (registers the task)

    pipe = pipeline("mllm-msr-recommend", model=recommender.model, tokenizer=recommender.processor, mode="title")
    first = examples["validation"].select(range(4))
    titles = dict(zip(items["item_id"], items["title"]))
    candidates = [{"item_id": c, "title": titles[c]} for c in first["candidate"]]
    user_text = "The user recently interacted with: " + "; ".join(titles[h] for h in first[0]["history"]) + "."
    ranked = pipe({"user_summary": user_text, "candidates": candidates, "history": first[0]["history"]})
    by_item = {r["candidate"]["item_id"]: r["score"] for r in ranked}
    np.testing.assert_allclose([by_item[c] for c in first["candidate"]], scores[:4], atol=1e-5)
    with pytest.raises(ValueError, match="MsrRecommender.from_pretrained"):
        pipeline("mllm-msr-recommend", model=out, mode="title")


def test_collaborative_tokens_need_packing():
    with pytest.raises(ValueError, match="shared_prefix"):
        MsrSftArguments(dataset_name="toy", mode="title", collaborative_tokens=True)
    with pytest.raises(ValueError, match="needs collaborative_tokens"):
        MsrSftArguments(dataset_name="toy", mode="title", packing_mode="shared_prefix", collaborative_user_token=True)
    with pytest.raises(ValueError, match="needs collaborative_user_token"):
        MsrSftArguments(
            dataset_name="toy",
            mode="title",
            packing_mode="shared_prefix",
            collaborative_tokens=True,
            collaborative_score_token=True,
        )


def test_history_windows_cut_each_train_users_sequence():
    from hf_mllm_msr.recommendation.windows import history_windows, window_targets

    assert window_targets(12, 3, 3) == [3, 6, 10]  # spread from the item before the last back to the 4th
    assert window_targets(4, 3, 3) == []  # too short: the last item is the protocol's own target
    items, examples, sequences = _collaborative_world()
    rows = history_windows(
        sequences, examples["train"], items["item_id"], windows_per_user=2, max_history=3, num_negatives=2, seed=0
    )
    users = set(examples["train"]["user_id"])
    seq_of = dict(zip(sequences["user_id"], sequences["item_ids"]))
    assert {u.split("@")[0] for u in rows["user_id"]} == users  # train users only, never validation ones
    for user, history, candidate, label in zip(rows["user_id"], rows["history"], rows["candidate"], rows["label"]):
        name, position = user.split("@")
        sequence = seq_of[name]
        assert history == sequence[max(0, int(position) - 3) : int(position)]
        if label == 1:
            assert candidate == sequence[int(position)]
        else:
            assert candidate not in sequence  # negatives: never interacted with
    assert len(rows) == len(users) * 2 * 3
    again = history_windows(
        sequences, examples["train"], items["item_id"], windows_per_user=2, max_history=3, num_negatives=2, seed=0
    )
    assert again["candidate"] == rows["candidate"]


def _small_windows(sequences, examples, items, **options):
    """The toy world's windows with 3 history items and 2 negatives each."""
    from hf_mllm_msr.recommendation.windows import history_windows

    return history_windows(
        sequences, examples["train"], items["item_id"], max_history=3, num_negatives=2, seed=0, **options
    )


def test_window_positives_are_the_target_and_the_items_after_it():
    items, examples, sequences = _collaborative_world()
    rows = _small_windows(sequences, examples, items, windows_per_user=2, positives_per_window=3)
    seq_of = dict(zip(sequences["user_id"], sequences["item_ids"]))
    groups: dict[str, list] = {}
    for user, candidate, label in zip(rows["user_id"], rows["candidate"], rows["label"]):
        groups.setdefault(user, []).append((candidate, label))
    for user, group in groups.items():
        name, position = user.split("@")
        expected = seq_of[name][int(position) : int(position) + 3]
        assert sorted(c for c, y in group if y == 1) == sorted(expected)
        assert sum(1 for _, y in group if y == 0) == 2


def test_holdout_keeps_the_windows_out_of_the_sasrec_sequences():
    from hf_mllm_msr.recommendation.windows import holdout_sequences, holdout_start

    assert holdout_start(10, 0.3) == 7 and holdout_start(10, 0.0) == 10
    assert holdout_start(4, 0.1) == 2  # the tail holds at least the protocol's target and one window
    with pytest.raises(ValueError, match="holdout_fraction"):
        holdout_start(10, 1.0)
    items, examples, sequences = _collaborative_world()
    train_users = set(examples["train"]["user_id"])
    seen = holdout_sequences(sequences, train_users, 0.5)
    seq_of = dict(zip(sequences["user_id"], sequences["item_ids"]))
    seen_of = dict(zip(seen["user_id"], seen["item_ids"]))
    for user, sequence in seq_of.items():
        if user in train_users:
            assert seen_of[user] == sequence[: holdout_start(len(sequence), 0.5)]
        else:
            assert seen_of[user] == sequence  # validation users: untouched
    rows = _small_windows(sequences, examples, items, windows_per_user=3, positives_per_window=2, holdout_fraction=0.5)
    assert len(rows) > 0
    for user, candidate, label in zip(rows["user_id"], rows["candidate"], rows["label"]):
        name, position = user.split("@")
        assert int(position) >= len(seen_of[name])  # every target lies in the tail SASRec never saw
        if label == 1:  # positives, too, come from the tail
            assert candidate in seq_of[name][len(seen_of[name]) :]
    with pytest.raises(ValueError, match="collaborative_holdout"):
        MsrSftArguments(dataset_name="toy", mode="title", packing_mode="shared_prefix", collaborative_holdout=0.3)
    with pytest.raises(ValueError, match="window_positives"):
        MsrSftArguments(dataset_name="toy", mode="title", window_positives=0)


def test_popularity_negatives_resample_only_the_negatives():
    from hf_mllm_msr.recommendation.windows import resample_negatives, training_popularity

    items, examples, sequences = _collaborative_world()
    train = examples["train"]
    weights = np.diff(training_popularity(train, items["item_id"], 1.0), prepend=0)
    # counted once per history (not once per candidate row) plus the positives: i0 is in how many train histories?
    histories = {u: h for u, h in zip(train["user_id"], train["history"])}
    positives = [c for c, y in zip(train["candidate"], train["label"]) if y == 1]
    expected = sum("i0" in h for h in histories.values()) + positives.count("i0") + 1
    assert weights[0] == expected
    weights = np.ones(NUM_ITEMS)
    weights[[1, 3, 5]] = 1e6  # odd items: the even users' only unseen ones, and among them these three dominate
    heavy = np.cumsum(weights)
    again = resample_negatives(train, items["item_id"], heavy, sequences, seed=0)
    seq_of = dict(zip(sequences["user_id"], sequences["item_ids"]))
    for name in ("user_id", "history", "label"):
        assert again[name] == train[name]  # the rows stay where they were; only the negatives' items change
    groups: dict[str, set] = {}
    for user, candidate, label, before in zip(
        again["user_id"], again["candidate"], again["label"], train["candidate"]
    ):
        if label == 1:
            assert candidate == before
        else:
            assert candidate not in seq_of[user]  # never an item of the user's whole sequence
            groups.setdefault(user, set()).add(candidate)
    even = [u for u in groups if int(u[1:]) % 2 == 0]
    assert even and all(groups[u] == {"i1", "i3", "i5"} for u in even)
    assert resample_negatives(train, items["item_id"], heavy, sequences, seed=0)["candidate"] == again["candidate"]
    # the windows and the summary steps draw theirs with the same weights
    from hf_mllm_msr.recommendation.examples import prefix_examples

    windows = _small_windows(sequences, examples, items, windows_per_user=2, negative_cdf=heavy)
    prefixes, _ = prefix_examples(train, items["item_id"], block_size=2, negative_cdf=heavy, seed=0)
    for rows in (windows, prefixes):
        drawn = {
            c
            for u, c, y in zip(rows["user_id"], rows["candidate"], rows["label"])
            if y == 0 and int(u.split("@")[0][1:]) % 2 == 0
        }
        assert drawn == {"i1", "i3", "i5"}
    with pytest.raises(ValueError, match="negative_popularity"):
        MsrSftArguments(dataset_name="toy", mode="title", negative_popularity=-1.0)


def test_training_with_popularity_negatives(base, tmp_path, caplog):
    from trl import ModelConfig

    items, examples, sequences = _collaborative_world()
    script = MsrSftArguments(
        dataset_name="toy", mode="title", packing_mode="shared_prefix", history_windows=2, negative_popularity=1.0,
        max_eval_users=0,
    )  # fmt: skip
    training = testing.cpu_sft_config(tmp_path / "adapter", max_steps=1)
    model_args = ModelConfig(model_name_or_path=base, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    with caplog.at_level("INFO"):
        train_recommender(script, training, model_args, items=items, examples=examples, sequences=sequences)
    assert "negative_popularity 1: training negatives drawn by popularity" in caplog.text
    assert "history_windows: " in caplog.text


def test_history_windows_need_mode_title():
    with pytest.raises(ValueError, match="mode 'title'"):
        MsrSftArguments(dataset_name="toy", mode="summary", history_windows=2)
