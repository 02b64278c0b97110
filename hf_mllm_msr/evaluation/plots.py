"""PNG plots of an evaluation report (:mod:`hf_mllm_msr.evaluation.report`): a metric per model with its bootstrap CI, and a
metric per cold-start bucket."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

GROUP_ORDER = ("in-domain", "cross-domain")


def ordered_models(results: Mapping) -> list[tuple[str, str]]:
    """(group, model name) pairs, in-domain first, then cross-domain, then any other group; config order within."""
    groups = list(GROUP_ORDER) + sorted({r["group"] for r in results["models"].values()} - set(GROUP_ORDER))
    return [(g, name) for g in groups for name, r in results["models"].items() if r["group"] == g]


def model_label(results: Mapping, group: str, name: str) -> str:
    """A model's name in plots, with its group (when not in-domain) and a flag when its numbers say nothing."""
    row = results["models"][name]
    label = f"{name} ({group})" if group != "in-domain" else name
    if row.get("not_trained"):
        return f"{label} (not trained)"
    return f"{label} (degenerate)" if row.get("degenerate") else label


def _new_figure(width: float, height: float):
    # The Agg canvas directly, not pyplot: no global state, no GUI backend, safe in threads and headless CI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_metric_per_model(results: Mapping, metric: str, path: str | Path) -> Path:
    """Horizontal bars of ``metric`` per model with bootstrap CI error bars; cross-domain rows hatched."""
    ordered = ordered_models(results)
    values = [results["models"][name]["metrics"].get(metric) for _, name in ordered]
    values = [np.nan if v is None else v for v in values]
    errors = np.zeros((2, len(ordered)))
    for i, (_, name) in enumerate(ordered):
        interval = results["models"][name]["ci"].get(metric)
        if interval and None not in interval and math.isfinite(values[i]):
            errors[:, i] = [max(values[i] - interval[0], 0.0), max(interval[1] - values[i], 0.0)]
    figure = _new_figure(7, 1.2 + 0.45 * len(ordered))
    axes = figure.add_subplot()
    positions = np.arange(len(ordered))[::-1]
    bars = axes.barh(positions, values, xerr=errors, capsize=3, color="#4c72b0")
    for bar, (group, _) in zip(bars, ordered):
        if group != "in-domain":
            bar.set_hatch("//")
            bar.set_color("#dd8452")
    axes.set_yticks(positions, [model_label(results, group, name) for group, name in ordered])
    axes.set_xlabel(f"{metric} ({100 * (1 - results['bootstrap']['alpha']):.0f}% bootstrap CI)")
    axes.set_title(f"{metric} per model ({results['num_users']} test users)")
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)


def plot_metric_by_bucket(results: Mapping, view: str, metric: str, path: str | Path) -> Path:
    """One line per model: ``metric`` across the buckets of ``view`` (``popularity`` or ``history_length``)."""
    counts = results["buckets"][view]["num_positives"]
    names = [n for n in results["buckets"][view]["names"] if counts[n]]
    figure = _new_figure(7, 4)
    axes = figure.add_subplot()
    for group, name in ordered_models(results):
        if results["models"][name].get("not_trained"):
            continue
        per_bucket = results["models"][name][f"by_{view}"]
        values = [per_bucket.get(n, {}).get(metric) for n in names]
        axes.plot(
            range(len(names)),
            [np.nan if v is None else v for v in values],
            marker="o",
            linestyle="-" if group == "in-domain" else "--",
            label=model_label(results, group, name),
        )
    axes.set_xticks(range(len(names)), [f"{n}\n({counts[n]})" for n in names])
    axes.set_xlabel("train users of the test item" if view == "popularity" else "history length (items)")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} by {view.replace('_', ' ')} bucket (number of test positives)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)
