"""recipes/summarize.py end to end; kill-and-resume of a summarization job; 2-process sharding (slow)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import torch

from hf_mllm_msr import load_msr_dataset
from hf_mllm_msr.cli import main as cli
from hf_mllm_msr.data.schema import history_key
from hf_mllm_msr.scripts.summarize import SummarizeArguments
from hf_mllm_msr.testing import text as testing

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def cli_summarize(argv):
    return cli(["summarize", *argv])


DATASET = {"num_users": 12, "num_items": 20, "num_test_negatives": 5, "num_train_negatives": 1}
FAST = ["--max_new_tokens", "4", "--repetition_penalty", "2.0", "--tagger", "none", "--batch_size", "4"]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return testing.tiny_llama(tmp_path_factory.mktemp("llama"))


def recipe_args(model, output_dir):
    return [
        "--dataset_name",
        "synthetic",
        "--dataset_options",
        json.dumps(DATASET),
        "--model_name_or_path",
        model,
        "--output_dir",
        str(output_dir),
        *FAST,
    ]


def test_recipe_writes_item_and_user_summaries(llama_dir, tmp_path, msr_cache_dir, monkeypatch):

    monkeypatch.setenv("HF_MLLM_MSR_CACHE", str(msr_cache_dir))
    report = cli_summarize(recipe_args(llama_dir, tmp_path / "out"))
    items = datasets.load_from_disk(str(tmp_path / "out" / "item_summaries"))
    users = datasets.load_from_disk(str(tmp_path / "out" / "user_summaries"))
    assert items.column_names == ["item_id", "summary", "visual_cues", "has_image", "flag", "prompt", "model"]
    assert users.column_names == ["user_id", "history_key", "summary", "steps", "flag", "prompt", "model"]
    assert len(items) == DATASET["num_items"] and report["num_user_histories"] == len(users) > 0
    assert len(set(users["history_key"])) == len(users)
    assert all(m == llama_dir for m in users["model"])
    first = report["generation_stats_rank0"]["generated"]
    assert first > 0
    # A rerun of a finished job generates nothing and writes the same datasets.
    again = cli_summarize(recipe_args(llama_dir, tmp_path / "out"))
    assert again["generation_stats_rank0"]["generated"] == 0
    assert datasets.load_from_disk(str(tmp_path / "out" / "user_summaries")).to_list() == users.to_list()
    # Only the test histories (scoring an adapter on a new dataset): a subset of the full run's, from its cache.
    test_only = cli_summarize([*recipe_args(llama_dir, tmp_path / "out"), "--splits", "test"])
    keys = datasets.load_from_disk(str(tmp_path / "out" / "user_summaries"))["history_key"]
    examples = load_msr_dataset("synthetic", "examples", **DATASET)
    assert sorted(keys) == sorted({history_key(h) for h in examples["test"]["history"]})
    assert test_only["splits"] == ["test"] and 0 < len(keys) < len(users)
    with pytest.raises(ValueError, match="'tset'"):
        cli_summarize([*recipe_args(llama_dir, tmp_path / "bad"), "--splits", "tset"])


CHILD = r"""
import sys, time, torch, datasets
torch.set_num_threads(1)
from hf_mllm_msr.summarization.generation import load_summarizer
from hf_mllm_msr.summarization.summarize import SummarizeConfig, make_generator, summarize_items
from hf_mllm_msr.summarization.users import summarize_users
from hf_mllm_msr.summarization.textualize import Textualizer
model_dir, cache, out, data = sys.argv[1:5]
model, tok = load_summarizer(model_dir, device="cpu")
slow = model.generate
def generate(*a, **k):  # slow enough that the parent can kill us mid-job
    time.sleep(0.15)
    return slow(*a, **k)
model.generate = generate
config = SummarizeConfig(max_new_tokens=4, batch_size=2, repetition_penalty=2.0, cache_path=cache)
gen = make_generator(model, tok, config)
items, examples = datasets.load_from_disk(data + "/items"), datasets.load_from_disk(data + "/examples")
item_summaries = summarize_items(items, generator=gen, config=config, textualizer=Textualizer(tagger=None))
users = summarize_users(examples, item_summaries, items, generator=gen, config=config)
item_summaries.save_to_disk(out + "/items"); users.save_to_disk(out + "/users")
print("generated", gen.stats["generated"])
"""


def small_job(tmp_path):
    rows = [
        {"item_id": f"i{i}", "title": f"lamp {i}", "text": "", "image": testing.noise_image(i) if i % 3 else None}
        for i in range(10)
    ]
    items = datasets.Dataset.from_list(
        rows,
        features=datasets.Features(
            {
                "item_id": datasets.Value("string"),
                "title": datasets.Value("string"),
                "text": datasets.Value("string"),
                "image": datasets.Image(),
            }
        ),
    )
    histories = [[f"i{(u + j) % 10}" for j in range(2 + u % 5)] for u in range(8)]
    examples = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "user_id": [f"u{u}" for u in range(8)],
                    "history": histories,
                    "candidate": ["i0"] * 8,
                    "label": [1] * 8,
                }
            )
        }
    )
    items.save_to_disk(str(tmp_path / "data" / "items"))
    examples.save_to_disk(str(tmp_path / "data" / "examples"))
    return str(tmp_path / "data")


def rows_in(cache: Path) -> int:
    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(cache, timeout=5) as db:
            # rows with an empty prompt are cached image cues, not generations
            return db.execute("SELECT COUNT(*) FROM generations WHERE prompt != ''").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def run_child(llama_dir, cache, out, data, kill_at=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, llama_dir, str(cache), str(out), data],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if kill_at is None:
        return proc.communicate(timeout=300)[0]
    deadline = time.time() + 120
    while rows_in(cache) < kill_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


def reference_run(llama_dir, cache, data):
    """The same job as CHILD, uninterrupted, in this process."""
    from hf_mllm_msr.summarization.generation import load_summarizer
    from hf_mllm_msr.summarization.summarize import SummarizeConfig, make_generator, summarize_items
    from hf_mllm_msr.summarization.textualize import Textualizer
    from hf_mllm_msr.summarization.users import summarize_users

    model, tok = load_summarizer(llama_dir, device="cpu")
    config = SummarizeConfig(max_new_tokens=4, batch_size=2, repetition_penalty=2.0, cache_path=str(cache))
    gen = make_generator(model, tok, config)
    items, examples = datasets.load_from_disk(data + "/items"), datasets.load_from_disk(data + "/examples")
    item_summaries = summarize_items(items, generator=gen, config=config, textualizer=Textualizer(tagger=None))
    users = summarize_users(examples, item_summaries, items, generator=gen, config=config)
    return item_summaries.to_list(), users.to_list(), gen.stats["generated"]


def test_kill_and_resume_gives_identical_output(llama_dir, tmp_path):
    data = small_job(tmp_path)
    ref_items, ref_users, total = reference_run(llama_dir, tmp_path / "ref.sqlite", data)
    assert rows_in(tmp_path / "ref.sqlite") == total
    cache = tmp_path / "job.sqlite"
    run_child(llama_dir, cache, tmp_path / "job", data, kill_at=14)  # items are done, users half-way
    done = rows_in(cache)
    assert 14 <= done < total
    out = run_child(llama_dir, cache, tmp_path / "job", data)
    assert int(out.split()[-1]) == total - done  # nothing lost: only the missing texts were generated
    assert rows_in(cache) == total  # nothing duplicated
    assert datasets.load_from_disk(str(tmp_path / "job" / "items")).to_list() == ref_items
    assert datasets.load_from_disk(str(tmp_path / "job" / "users")).to_list() == ref_users


@pytest.mark.slow
def test_two_process_sharding_matches_one_process(llama_dir, tmp_path, msr_cache_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HF_MLLM_MSR_CACHE": str(msr_cache_dir)}
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    script = str(ROOT / "recipes" / "summarize.py")
    args = recipe_args(llama_dir, tmp_path / "two")
    subprocess.run([*launch, script, *args], env=env, check=True, timeout=600, capture_output=True)
    subprocess.run(
        [sys.executable, script, *recipe_args(llama_dir, tmp_path / "one")],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    report = json.loads((tmp_path / "two" / "summarize_report.json").read_text())
    assert report["num_processes"] == 2
    # Rank 0 generated only its own shard; the merge came from rank 1's cache rows.
    assert (
        0
        < report["generation_stats_rank0"]["generated"]
        < json.loads((tmp_path / "one" / "summarize_report.json").read_text())["generation_stats_rank0"]["generated"]
    )
    for name in ("item_summaries", "user_summaries"):
        assert (
            datasets.load_from_disk(str(tmp_path / "two" / name)).to_list()
            == datasets.load_from_disk(str(tmp_path / "one" / name)).to_list()
        )


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("recipes/*/summarize/*.yaml")), ids=lambda p: f"{p.parent.parent.name}/{p.stem}"
)
def test_every_summarize_yaml_parses(path):
    from trl import TrlParser

    from hf_mllm_msr.summarization.summarize import SummarizeConfig

    args, config = TrlParser((SummarizeArguments, SummarizeConfig)).parse_args_and_config(args=["--config", str(path)])
    assert args.dataset_name and args.output_dir and config.block_size >= 1
