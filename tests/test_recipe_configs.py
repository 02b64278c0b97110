"""Every recipe YAML is read by its stage's own parser: each key is a field of that stage's dataclasses (a misspelt or
retired key fails here, not an hour into a run), and the SFT recipes' own arguments pass their validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from hf_mllm_msr.scripts import align, evaluate, sft, summarize

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PARSERS = {"sft": sft.make_parser, "summarize": summarize.make_parser, "evaluate": evaluate.make_parser}
PARSERS["align"] = align.make_parser
STAGE_RECIPES = sorted(p for p in RECIPES.glob("*/*/*.yaml") if p.parent.name in PARSERS)


def test_every_stage_has_recipes():
    assert {p.parent.name for p in STAGE_RECIPES} == set(PARSERS)


@pytest.mark.parametrize("path", STAGE_RECIPES, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_keys_are_fields_of_its_stage(path):
    config = yaml.safe_load(path.read_text())
    parser = PARSERS[path.parent.name]()
    fields = {f.name for cls in parser.dataclass_types for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - fields)
    assert not unknown, f"{path.relative_to(RECIPES)}: keys no {path.parent.name} dataclass has: {unknown}"
    if path.parent.name == "sft":
        from hf_mllm_msr.recommendation.sft_arguments import MsrSftArguments

        own = {f.name for f in dataclasses.fields(MsrSftArguments)}
        MsrSftArguments(**{k: v for k, v in config.items() if k in own})  # raises on an invalid combination
