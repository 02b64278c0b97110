"""experiments/probe_cold_protocol.py: the cold events it scores (the issue-31 cold-item claim rests on them)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
probe = pytest.importorskip("probe_cold_protocol")

CATALOGUE = [f"i{n}" for n in range(60)]
SEQUENCES = {
    "user_id": ["train", "test_a", "test_b", "test_c"],
    "item_ids": [
        ["i1", "i2", "i3", "i4"],
        ["i1", "i2", "i3", "i50", "i4", "i51", "i5"],  # cold at positions 3 and 5
        ["i50", "i1", "i2", "i3"],  # its only cold item is at position 0: no history before it
        ["i1", "i2", "i3", "i4", "i5"],  # nothing cold
    ],
}
EXAMPLES = {"test": {"user_id": ["test_a", "test_b", "test_c"]}}
COUNTS = {f"i{n}": 10 for n in range(1, 10)}  # i50 and i51 were never seen in training


def groups(rows):
    """(user, history, positive) of each group of 1 + 20 rows."""
    return [
        (rows["user_id"][r], tuple(rows["history"][r]), rows["candidate"][r])
        for r in range(len(rows["label"]))
        if rows["label"][r] == 1
    ]


def test_last_keeps_one_event_per_user_and_all_keeps_every_event_with_history():
    last = probe.cold_rows(SEQUENCES, EXAMPLES, COUNTS, CATALOGUE, max_users=5, max_history=2)
    every = probe.cold_rows(SEQUENCES, EXAMPLES, COUNTS, CATALOGUE, max_users=5, max_history=2, events="all")
    assert groups(last) == [("test_a", ("i50", "i4"), "i51")]
    assert groups(every) == [("test_a", ("i50", "i4"), "i51"), ("test_a", ("i2", "i3"), "i50")]
    # The last event's negatives are the same in both: the claims made with "last" carry over.
    assert every["candidate"][:21] == last["candidate"]
    assert probe.first_group_per_user(every["user_id"]).tolist() == [True] * 21 + [False] * 21
    for start in (0, 21):
        negatives = every["candidate"][start + 1 : start + 21]
        assert len(set(negatives)) == 20 and not set(negatives) & set(SEQUENCES["item_ids"][1])


def test_threshold_counts_training_users_and_events_must_be_known():
    warm = probe.cold_rows(SEQUENCES, EXAMPLES, COUNTS, CATALOGUE, max_users=11, max_history=10, events="all")
    # Under 11 every item counts: positions 3-6 of test_a, 3 of test_b, 3-4 of test_c (never 0-2: too little history).
    assert [(user, positive) for user, _, positive in groups(warm)] == [
        ("test_a", "i5"),
        ("test_a", "i51"),
        ("test_a", "i4"),
        ("test_a", "i50"),
        ("test_b", "i3"),
        ("test_c", "i5"),
        ("test_c", "i4"),
    ]
    with pytest.raises(ValueError, match="events"):
        probe.cold_rows(SEQUENCES, EXAMPLES, COUNTS, CATALOGUE, max_users=5, max_history=2, events="first")
