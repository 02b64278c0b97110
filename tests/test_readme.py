"""Every command of the README's shell blocks is checked here: a `make` target dry-runs (`make -n`), a stage command
(`mllm-msr <stage> ...`, `python recipes/<stage>.py ...`, `accelerate launch ... recipes/<stage>.py ...`) parses
its YAML and flags with that stage's own parser, as the run would before its first step (the runs themselves take
minutes to hours; the tests of each stage run them on tiny models). The README's Python blocks run, in order, in
tests/test_hub_round_trip.py against tiny models on a local stand-in for the Hub."""

import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from hf_mllm_msr.cli import main as cli
from hf_mllm_msr.scripts import STAGES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECIPE_FILES = {
    "recipes/sft.py": "sft",
    "recipes/summarize.py": "summarize",
    "recipes/evaluate.py": "evaluate",
    "recipes/align_vision.py": "align",
}


def shell_commands(markdown: str) -> list[list[str]]:
    """The commands of every ```bash block, continuation lines joined, comments dropped, split as a shell would."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def stage_command(words: list[str]) -> tuple[str, list[str]] | None:
    """`(stage, its arguments)` of a command that runs a stage's main, else None."""
    if words[0] == "mllm-msr" and len(words) > 1 and words[1] in STAGES:
        return words[1], words[2:]
    if words[0] == "python" and words[1] in RECIPE_FILES:
        return RECIPE_FILES[words[1]], words[2:]
    if words[:2] == ["accelerate", "launch"]:
        script = next(k for k, word in enumerate(words) if word in RECIPE_FILES)
        launch_options = words[2:script]
        if "--config_file" in launch_options:
            assert (ROOT / launch_options[launch_options.index("--config_file") + 1]).is_file()
        return RECIPE_FILES[words[script]], words[script + 1 :]
    return None


COMMANDS = shell_commands(README.read_text())


def test_the_readme_starts_with_the_two_setup_commands():
    assert COMMANDS[:2] == [["make", "demo"], ["make", "test"]]
    assert len(README.read_text().splitlines()) <= 200


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words)[:80])
def test_readme_command(words, capsys):
    if words[0] == "make":
        proc = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return
    if words == ["mllm-msr", "--help"]:
        with pytest.raises(SystemExit) as exit_:
            cli(["--help"])
        printed = capsys.readouterr().out
        assert exit_.value.code == 0 and all(f"  {stage} " in printed for stage in STAGES)
        return
    found = stage_command(words)
    assert found, f"the README runs {words}, which this test does not know how to check"
    stage, argv = found
    if "--config" in argv:
        config = ROOT / argv[argv.index("--config") + 1]
        if yaml.safe_load(config.read_text()).get("bf16"):  # a GPU recipe: parsed here with the CPU overrides
            argv = [*argv, "--bf16", "false", "--use_cpu", "true"]
    module = importlib.import_module(f"hf_mllm_msr.scripts.{stage}")
    parsed = module.make_parser().parse_args_and_config(args=argv)
    assert parsed and all(args is not None for args in parsed)
