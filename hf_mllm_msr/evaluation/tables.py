"""The Markdown side of the evaluation report: the tables (per model, per cold-start bucket, paired differences)
and the whole ``report.md``. The numbers come from :func:`hf_mllm_msr.evaluation.report.evaluate_models`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from .plots import GROUP_ORDER, ordered_models


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def training_size_text(row: Mapping) -> str:
    """'755 users, 80,412 interactions' from a model's ``training_size``; '' when unknown."""
    size = row.get("training_size") or {}
    parts = [f"{value:,} {key}" for key, value in size.items() if isinstance(value, int)]
    return ", ".join(parts)


def markdown_table(results: Mapping, group: str | None = None, highlight: str | None = None) -> str:
    """Markdown table, one row per model (of ``group`` if given; ``highlight`` in bold), columns AUC, user AUC,
    HR/NDCG/MRR@K and what it was trained on. A model that could not be trained shows its reason; a degenerate one
    (constant scores) is marked and gets no interval."""
    columns = ["auc", "user_auc"] + [f"{m}@{k}" for k in results["ks"] for m in ("hr", "ndcg", "mrr")]
    lines = ["| model | " + " | ".join(columns) + " | trained on |", "|---" * (len(columns) + 2) + "|"]
    for model_group, name in ordered_models(results):
        if group is None or model_group == group:
            row = results["models"][name]
            shown = f"**{name}**" if name == highlight else name
            if row.get("not_trained"):
                cells = [f"not trained: {row['not_trained']}"] + [""] * (len(columns) - 1)
            else:
                cells = []
                for column in columns:
                    cell = _fmt(row["metrics"].get(column))
                    if column in row["ci"] and row["ci"][column][0] is not None:
                        low, high = row["ci"][column]
                        cell += f" [{low:.3f}, {high:.3f}]"
                    cells.append(cell)
                if row.get("degenerate"):
                    shown += f" (degenerate: {row['degenerate']})"
            lines.append(f"| {shown} | " + " | ".join(cells) + f" | {training_size_text(row)} |")
    return "\n".join(lines)


def paired_table(results: Mapping) -> str:
    """Markdown section: each model's AUC minus the reference model's, with the paired bootstrap interval."""
    reference, alpha = results["reference"], results["bootstrap"]["alpha"]
    lines = [
        f"## AUC difference to `{reference}` (paired)",
        f"Every model is compared with `{reference}` on the same resamples of users; the difference is clear when its "
        f"{100 * (1 - alpha):.0f}% interval excludes 0.\n",
        "| model | AUC - reference | interval | resamples where better |",
        "|---|---|---|---|",
    ]
    for _, name in ordered_models(results):
        paired = results["models"][name].get("vs_reference")
        if paired:
            low, high = paired["ci"]
            lines.append(
                f"| {name} | {paired['difference']:+.4f} | [{low:+.3f}, {high:+.3f}] | {paired['share_a_better']:.0%} |"
            )
    return "\n".join(lines)


def _bucket_table(results: Mapping, view: str, metric: str) -> str:
    counts = results["buckets"][view]["num_positives"]
    names = [n for n in results["buckets"][view]["names"] if counts[n]]  # empty buckets have no value to show
    lines = ["| model | " + " | ".join(f"{n} ({counts[n]})" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for _, name in ordered_models(results):
        if results["models"][name].get("not_trained"):
            continue
        per_bucket = results["models"][name][f"by_{view}"]
        lines.append(f"| {name} | " + " | ".join(_fmt(per_bucket.get(n, {}).get(metric)) for n in names) + " |")
    return "\n".join(lines)


def stage_table(stage_seconds: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown section: each stage's wall-clock and CPU seconds (CPU: every thread of the process; wall is longer
    when other jobs share the cores)."""
    lines = ["## Stage times", "| stage | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {stage} | {t['wall']:.1f} | {t['cpu']:.1f} |" for stage, t in stage_seconds.items()]
    return "\n".join(lines)


def markdown_report(results: Mapping, plots: Sequence[str] = ()) -> str:
    """The whole ``report.md``: protocol, main table, cross-domain section (when present), cold-start tables, stage
    times (when recorded)."""
    protocol = "\n".join(f"- **{key}**: `{json.dumps(value)}`" for key, value in results["protocol"].items())
    bootstrap = results["bootstrap"]
    parts = [
        "# MLLM-MSR evaluation report",
        f"{results['num_users']} test users, {results['num_rows']} candidate rows; every model scores the same rows.",
        "## Protocol\n" + protocol,
        f"## Results (in-domain)\nBrackets: {100 * (1 - bootstrap['alpha']):.0f}% bootstrap confidence interval "
        f"({bootstrap['num_samples']} resamples of users, seed {bootstrap['seed']}).\n\n"
        + markdown_table(results, "in-domain"),
    ]
    other_groups = {r["group"] for r in results["models"].values()} - {"in-domain"}
    for group in sorted(other_groups, key=lambda g: (g not in GROUP_ORDER, g)):
        intro = "Adapters trained on another dataset, scored on this dataset's test candidates."
        parts.append(
            f"## Results ({group})\n{intro if group == 'cross-domain' else ''}\n\n" + markdown_table(results, group)
        )
    if results.get("reference"):
        parts.append(paired_table(results))
    first_model = next((r for r in results["models"].values() if not r.get("not_trained")), {})
    for view, title in (("popularity", "test item popularity in train"), ("history_length", "user history length")):
        for metric in next(iter(first_model.get(f"by_{view}", {}).values()), {}):
            parts.append(f"## {metric} by {title}\nColumns: bucket (number of test positives).\n\n")
            parts[-1] += _bucket_table(results, view, metric)
    if results.get("stage_seconds"):
        parts.append(stage_table(results["stage_seconds"]))
    parts += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n\n".join(parts) + "\n"
