"""Reliability of the whole flow (issue 6): bad input, SIGKILL at any stage, determinism, safe loading.

The stage-level versions of these live next to each stage (tests/test_data.py, test_builders.py,
test_generation.py, test_summarize.py); here the full demo flow runs on tiny models.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import datasets
import pytest

from hf_mllm_msr.testing.demo import demo_command, run_demo, run_movielens_demo
from hf_mllm_msr.testing.raw_data import CORPUS_OPTIONS

PACKAGE = Path(__file__).resolve().parents[1] / "hf_mllm_msr"
BUILDERS = Path(__file__).resolve().parents[1] / "dataset_builders"


def corpus_demo(output_dir, data_dir):
    options = {**CORPUS_OPTIONS, "min_user_interactions": 3, "num_train_negatives": 3}
    return run_movielens_demo(output_dir, data_dir, options)


def models(output_dir) -> dict:
    """The report's rows, without the wall-clock times (`fit_seconds`), which no two runs share, and with each adapter's
    folder (`source`) relative to the run's output_dir: the two runs write to different folders."""
    rows = json.loads((output_dir / "report" / "results.json").read_text())["models"]
    out = {name: {k: v for k, v in row.items() if not k.endswith("_seconds")} for name, row in rows.items()}
    for row in out.values():
        if row.get("kind") == "adapter" and "source" in row:
            row["source"] = str(Path(row["source"]).resolve().relative_to(output_dir.resolve()))
    return out


def summaries(output_dir, stage):
    return datasets.load_from_disk(str(output_dir / "summaries" / stage)).remove_columns("model").to_list()


@pytest.mark.slow  # 24 s; the fast run keeps the data layer's case (test_builders: the same corpus gives the clean output)
def test_full_flow_on_the_bad_input_corpus(bad_input_corpus, tmp_path):
    """Every kind of bad input at once: no crash, every skip reported with its reason, and the good rows'
    outputs identical to a run on the same data without the bad rows."""
    bad_dir, clean_dir, _ = bad_input_corpus
    runs = {}
    for name, data_dir in (("bad", bad_dir), ("clean", clean_dir)):
        proc = corpus_demo(tmp_path / name, data_dir)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = proc
    for reason in (
        "interactions with unknown item ids",
        "truncated or corrupt image",
        "not an image",
        "too many pixels",
        "path outside data_dir",
        "missing, NaN or negative timestamp",
    ):
        assert reason in runs["bad"].stderr, reason
    for stage in ("item_summaries", "user_summaries"):
        assert summaries(tmp_path / "bad", stage) == summaries(tmp_path / "clean", stage), stage
    assert models(tmp_path / "bad") == models(tmp_path / "clean")
    # the injected title is data inside the prompt, never a new chat turn
    prompts = " ".join(datasets.load_from_disk(str(tmp_path / "bad" / "summaries" / "item_summaries"))["prompt"])
    assert "<|im_start|>system" not in prompts and "Ignore all previous instructions" in prompts


def _kill_when(proc, condition, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    "kill_point",
    # a kill inside the summaries stage is also tested fast, on the stage alone (test_summarize_recipe's kill and resume)
    [pytest.param("summaries", marks=pytest.mark.slow), "adapter"],
)
def test_sigkill_then_rerun_gives_the_uninterrupted_result(kill_point, tmp_path, demo_run):
    """SIGKILL in the middle of a stage, rerun: the final outputs equal those of an uninterrupted run (the
    `demo_run` fixture), and no partial folder is ever visible under a final stage name."""
    uninterrupted, _ = demo_run
    output_dir = tmp_path / "run"
    proc = subprocess.Popen(demo_command(output_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = output_dir / f".{kill_point}.partial"
    killed = _kill_when(proc, partial.exists)
    assert killed, f"the run ended before reaching {kill_point}"
    assert not (output_dir / kill_point).exists(), "an unfinished stage must not appear under its final name"

    rerun = run_demo(output_dir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for stage in ("item_summaries", "user_summaries"):
        assert summaries(output_dir, stage) == summaries(uninterrupted, stage)
    assert models(output_dir) == models(uninterrupted)


def _sources():
    return [p for root in (PACKAGE, BUILDERS, PACKAGE.parent / "recipes") for p in root.rglob("*.py")]


def test_no_unsafe_loading_in_the_code():
    """No pickle loading, no unsafe YAML, and remote code only when the user passes it."""
    offences = []
    for path in _sources():
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"trust_remote_code\s*=\s*True", code):
                offences.append(f"{path}:{n}: trust_remote_code=True")
            if "torch.load(" in code and "weights_only=True" not in code:
                offences.append(f"{path}:{n}: torch.load without weights_only=True")
            if re.search(r"\byaml\.(load|unsafe_load|full_load)\(", code):
                offences.append(f"{path}:{n}: unsafe yaml load")
            if re.search(r"\bpickle\.loads?\(|\bdill\.loads?\(", code):
                offences.append(f"{path}:{n}: pickle load")
    assert not offences, "\n".join(offences)
