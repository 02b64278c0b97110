"""Model cards of adapters and summaries datasets (pushing them and resolving Hub ids: :mod:`hf_mllm_msr.publishing.hub`).

Cards are rendered from the Jinja templates in ``model_cards/`` (shipped as ``hf_mllm_msr.model_cards``) with
`huggingface_hub`'s ``ModelCard`` / ``ModelCardData`` / ``EvalResult``, so the card's ``model-index`` carries every
metric with its dataset and protocol.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from ..evaluation import tables
from ..recommendation.msr_config import MSR_CONFIG_NAME, RecommenderConfig

logger = logging.getLogger(__name__)

ADAPTER_TEMPLATE = "recommender_adapter.md"
SUMMARIES_TEMPLATE = "summaries_dataset.md"
TASK_TYPE = "text-classification"  # the recommender answers Yes/No; the Hub has no sequential-recommendation task
TASK_NAME = "Sequential recommendation (1 positive + N sampled negatives per user)"


def metric_display_name(metric: str) -> str:
    """'auc' -> 'AUC', 'user_auc' -> 'User AUC', 'ndcg@10' -> 'NDCG@10'."""
    return {"auc": "AUC", "user_auc": "User AUC"}.get(metric, metric.upper())


def template_path(template_name: str):
    """Context manager yielding the path of a card template shipped in ``hf_mllm_msr.model_cards``."""
    try:
        # as_file gives a real path even when the package is installed as a zip.
        return resources.as_file(resources.files("hf_mllm_msr.model_cards") / template_name)
    except ModuleNotFoundError:
        # setuptools' editable finder maps only top-level packages, not package-dir entries such as
        # hf_mllm_msr.model_cards -> model_cards/; in a checkout, read the folder itself.
        return contextlib.nullcontext(Path(__file__).resolve().parents[2] / "model_cards" / template_name)


def _render(card_class, template_name: str, card_data, **template_kwargs):
    with template_path(template_name) as path:
        return card_class.from_template(card_data, template_path=str(path), **template_kwargs)


def _pick_model(results: Mapping, model_key: str | None) -> tuple[str, Mapping]:
    models = results["models"]
    if model_key is None:
        adapters = [name for name, row in models.items() if row.get("kind") == "adapter"]
        model_key = adapters[0] if adapters else next(iter(models))
    if model_key not in models:
        raise KeyError(f"Model {model_key!r} is not in the results; available: {sorted(models)}.")
    return model_key, models[model_key]


def eval_results(metrics: Mapping, *, dataset_type: str, dataset_name: str, protocol: Mapping) -> list[EvalResult]:
    """One `EvalResult` per metric (AUC, user AUC, HR/NDCG/MRR@K), all on the test split under ``protocol``."""
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_config=protocol.get("config_name"),
            dataset_split="test",
            dataset_args=dict(protocol),
            metric_type=metric,
            metric_name=metric_display_name(metric),
            metric_value=float(value),
        )
        for metric, value in metrics.items()
        if (metric in ("auc", "user_auc") or "@" in metric) and value is not None
    ]


def render_model_card(
    recipe: Mapping | None,
    results: Mapping,
    *,
    base_model: str,
    dataset_name: str,
    protocol: Mapping | None = None,
    model_key: str | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    msr_config: RecommenderConfig | Mapping | None = None,
    license: str | None = None,
) -> ModelCard:
    """Render the recommender adapter card.

    Args:
        recipe: the training recipe (YAML as a dict), shown verbatim under "Training settings".
        results: `report.evaluate_models` output (the card shows every model's table) or a flat metrics dict.
        base_model: Hub id or path of the base (M)LLM.
        dataset_name: the dataset the adapter was trained on.
        protocol: the evaluation protocol (default: ``results["protocol"]``); written verbatim into the card and into
            every model-index entry (``dataset.args``).
        model_key: the results row of this adapter (default: the first row of kind ``adapter``, else the first).
        repo_id: Hub id the adapter is pushed to, shown in the loading snippet (a folder placeholder when None).
        model_name: name in the model-index (default: ``repo_id``'s last part or ``model_key``).
        msr_config: the adapter's ``RecommenderConfig`` (mode, prompt versions, collaborative tokens), or the dict of
            its ``msr_config.json``.
        license: license of the adapter (usually the base model's).
    """
    if "models" in results:
        model_key, row = _pick_model(results, model_key)
        metrics = row["metrics"]
    else:
        model_key, metrics, results = model_key or "mllm-msr", results, None
    protocol = dict(protocol if protocol is not None else (results or {}).get("protocol", {}))
    if not isinstance(msr_config, RecommenderConfig):
        msr_config = RecommenderConfig.from_dict(msr_config or {})
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else model_key)
    eval_dataset = str(protocol.get("dataset", dataset_name))
    on_hub = _is_hub_id(base_model)
    card_data = ModelCardData(
        base_model=base_model if on_hub else None,
        library_name="peft",
        license=license,
        tags=["mllm-msr", "recommendation", "sequential-recommendation", "lora", "peft", "trl"],
        model_name=model_name,
        eval_results=eval_results(metrics, dataset_type=eval_dataset, dataset_name=eval_dataset, protocol=protocol),
    )
    if results is not None:
        groups = sorted({r["group"] for r in results["models"].values()}, key=lambda g: g != "in-domain")
        table = "\n\n".join(f"**{g}**\n\n" + tables.markdown_table(results, g, highlight=model_key) for g in groups)
        alpha = results.get("bootstrap", {}).get("alpha", 0.05)
        num_users, num_rows = results.get("num_users", "?"), results.get("num_rows", "?")
    else:
        table = "\n".join(f"- {metric_display_name(m)}: {v:.4f}" for m, v in metrics.items() if v is not None)
        alpha, num_users, num_rows = 0.05, metrics.get("num_users", "?"), metrics.get("num_rows", "?")
    if not table:
        table = (
            "Not evaluated yet. Score it with `recipes/evaluate.py`, then render this card again from its "
            "`results.json` (`mllm-msr push --results results.json ...`)."
        )
    return _render(
        ModelCard,
        ADAPTER_TEMPLATE,
        card_data,
        model_name=model_name,
        load_id=repo_id or "path/to/this-adapter",
        base_model=base_model,
        base_model_link=f"[{base_model}](https://huggingface.co/{base_model})" if on_hub else f"`{base_model}`",
        dataset_name=dataset_name,
        eval_dataset=eval_dataset,
        mode=msr_config.mode or "unknown",
        candidate_text=msr_config.candidate_text,
        collaborative=msr_config.collaborative_tokens,
        prompt_version=msr_config.prompt_version or "unknown",
        summary_prompt_version=msr_config.summary_prompt_version or "unknown",
        num_users=num_users,
        num_rows=num_rows,
        confidence=f"{100 * (1 - alpha):.0f}%",
        results_table=table,
        protocol_yaml=yaml.safe_dump(protocol, sort_keys=False).strip(),
        recipe_yaml=yaml.safe_dump(dict(recipe or {}), sort_keys=False).strip(),
    )


def _is_hub_id(name: str) -> bool:
    """``org/name`` (a Hub repo id), not a local path or an offline short name."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.count("/") != 1 or name.startswith((".", "/", "~")) or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def write_adapter_card(adapter_dir: str | Path, results: Mapping, *, repo_id: str | None = None, **kwargs) -> Path:
    """Render the card of an adapter folder from its ``msr_config.json`` and recipe YAML; writes ``README.md``.

    ``kwargs`` go to `render_model_card` and override what the folder says (``base_model``, ``dataset_name``, ...).
    """
    adapter_dir = Path(adapter_dir)
    msr_config = RecommenderConfig.from_pretrained(adapter_dir)
    recipes = sorted(adapter_dir.glob("*.yaml"))
    recipe = yaml.safe_load(recipes[0].read_text()) if recipes else {}
    protocol = msr_config.protocol
    kwargs.setdefault("base_model", msr_config.base_model or _peft_base_model(adapter_dir))
    kwargs.setdefault("dataset_name", str(protocol.get("dataset", "unknown")))
    card = render_model_card(recipe, results, repo_id=repo_id, msr_config=msr_config, **kwargs)
    card.save(adapter_dir / "README.md")
    return adapter_dir / "README.md"


def _peft_base_model(adapter_dir: Path) -> str:
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{adapter_dir} has neither {MSR_CONFIG_NAME} nor adapter_config.json: not an adapter."
        )
    return json.loads(config_path.read_text())["base_model_name_or_path"]


def render_summaries_card(
    dataset, *, repo_id: str, source_dataset: str, summarizer_model: str, prompt_version: str, kind: str = "item"
) -> DatasetCard:
    """Render the card of an item or user summaries dataset (`datasets.Dataset` or `DatasetDict`)."""
    splits = dict(dataset.num_rows) if isinstance(dataset.num_rows, Mapping) else {"train": dataset.num_rows}
    columns = dataset.column_names
    columns = next(iter(columns.values())) if isinstance(columns, Mapping) else columns
    card_data = DatasetCardData(
        pretty_name=f"MLLM-MSR {kind} summaries of {source_dataset}",
        tags=["mllm-msr", "recommendation", "synthetic-text"],
        task_categories=["text-generation"],
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}],
    )
    description = (
        "One paragraph per item, written from the item's image and title."
        if kind == "item"
        else "One preference summary per user history, rewritten recurrently over blocks of the history."
    )
    return _render(
        DatasetCard,
        SUMMARIES_TEMPLATE,
        card_data,
        description=description,
        repo_id=repo_id,
        source_dataset=source_dataset,
        summarizer_model=summarizer_model,
        prompt_version=prompt_version,
        num_rows=sum(splits.values()),
        splits=", ".join(f"{s}: {n}" for s, n in splits.items()),
        columns=", ".join(f"`{c}`" for c in columns),
    )
