"""Paired AUC differences between rows of several ``scores.npz`` files of ``benchmarks/bench_movielens.py``.

Every run of the benchmark on the same folder and seed scores the same test rows in the same order (checked here), so
an adapter scored in one run can be compared with one scored in another without scoring either again:

    python experiments/compare_scores.py runs/bench_summary/scores.npz:sft-summary \
        runs/bench_A/scores.npz:sft-positives-lr1e-3 runs/bench_default/scores.npz:title-only

Each argument is ``FILE:ROW``; every row is compared with every later one and with popularity and SASRec of the
first file that has them (user bootstrap, 1,000 resamples, seed 0, as the benchmark). ``--mean NAME=ROW,ROW`` adds
the mean of rows' scores as one more row, e.g. two training seeds of one recipe (recipes/movielens/README.md):

    python experiments/compare_scores.py runs/bench_A/scores.npz:sft-positives-lr1e-3 \
        runs/score_seed1/scores.npz:sft-title-text-positives-seed1 \
        --mean seeds-0-1=sft-positives-lr1e-3,sft-title-text-positives-seed1
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help="FILE:ROW, e.g. runs/bench/scores.npz:title-only")
    parser.add_argument(
        "--mean",
        action="append",
        default=[],
        metavar="NAME=ROW,ROW",
        help="one more row NAME: the mean of the named rows' scores (repeatable)",
    )
    args = parser.parse_args()

    import numpy as np

    from hf_mllm_msr.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
    from hf_mllm_msr.evaluation.metrics import ranking_metrics

    files, scores = {}, {}
    for spec in args.rows:
        path, _, row = spec.rpartition(":")
        files.setdefault(path, np.load(path))
        if row not in files[path]:
            raise SystemExit(f"{spec}: {path} has no row {row!r}; its rows: {sorted(files[path].keys())}")
        scores[row] = files[path][row]
    first = files[args.rows[0].rpartition(":")[0]]
    labels, users = first["label"], first["user_id"]
    for path, data in files.items():
        if not (np.array_equal(data["label"], labels) and np.array_equal(data["user_id"], users)):
            raise SystemExit(f"{path} scores other rows than {args.rows[0]}: not the same folder, protocol or seed.")
    for spec in args.mean:
        name, _, members = spec.partition("=")
        unknown = [row for row in members.split(",") if row not in scores]
        if not name or not members or unknown:
            raise SystemExit(f"--mean {spec}: expected NAME=ROW,ROW over the rows given; unknown: {unknown}")
        scores[name] = np.mean([scores[row] for row in members.split(",")], axis=0)
    names = list(scores)
    for reference in ("popularity", "sasrec"):
        holder = next((data for data in files.values() if reference in data), None)
        if holder is None:
            raise SystemExit(f"No file given has a {reference} row: add one of bench_movielens.py's scores.npz.")
        scores.setdefault(reference, holder[reference])
    for name, values in scores.items():
        low, high = bootstrap_ci(values, labels, users)
        metrics = ranking_metrics(values, labels, users, ks=(10,))
        print(f"{name:40s} AUC {metrics['auc']:.3f} [{low:.3f}, {high:.3f}]  HR@10 {metrics['hr@10']:.3f}")
    for position, name in enumerate(names):
        for reference in [*names[position + 1 :], "popularity", "sasrec"]:
            diff = paired_bootstrap(scores[name], scores[reference], labels, users)
            print(f"{name} - {reference}: {diff['difference']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]")


if __name__ == "__main__":
    main()
