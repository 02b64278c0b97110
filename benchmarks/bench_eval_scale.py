"""The evaluation at catalogue scale: `recipes/evaluate.py` with the three baselines on a MovieLens-format folder of
10 k items and 100 k ratings (610 users, the shape of ml-latest-small), each stage timed.

The folder comes from ``bench_build.write_movielens`` (genre-persistent user sequences over power-law items: see its
docstring) unless ``--data_dir`` names a real one. The evaluation is ``recipes/movielens/evaluate/config_posters.yaml``'s
protocol (users split 80/10/10, the last item against 20 sampled negatives) with no adapter, run by the same main as
``python recipes/evaluate.py``. It prints each stage's wall and CPU seconds (``results.json``'s ``stage_seconds``),
each model's AUC, and ``ratio=<wall seconds / 600>`` last (goal, issue 33: <= 1, i.e. 10 minutes on 2 cores, with
SASRec and GRU4Rec above popularity).

    OMP_NUM_THREADS=1 python benchmarks/bench_eval_scale.py [--workdir /tmp/eval_scale] [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

TIME_LIMIT_S = 10 * 60
CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "movielens" / "evaluate" / "config_posters.yaml"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", help="A MovieLens-format folder (default: write the 10 k-item one).")
    parser.add_argument(
        "--workdir", help="Folder for the generated data, the cache and the report (default: temporary)."
    )
    parser.add_argument("--items", type=int, default=10_000, help="Catalogue size of the generated folder.")
    parser.add_argument("--interactions", type=int, default=100_000, help="Ratings in the generated folder.")
    parser.add_argument("--bootstrap_samples", type=int, default=1000, help="User resamples per interval.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_build import write_movielens

    from hf_mllm_msr.scripts.evaluate import main as evaluate
    from hf_mllm_msr.scripts.evaluate import make_parser

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_eval_scale_"))
    data_dir = args.data_dir or str(write_movielens(workdir / "ml-scale", args.items, args.interactions))
    os.environ["HF_MLLM_MSR_CACHE"] = str(workdir / "cache")  # a fresh build: the build stage is part of the timing
    wall = time.perf_counter()
    overrides = ["--config", str(CONFIG), "--data_dir", data_dir, "--output_dir", str(workdir / "evaluate")]
    overrides += ["--bootstrap_samples", str(args.bootstrap_samples)]
    results = evaluate(*make_parser().parse_args_and_config(overrides))
    wall = time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_SELF)

    print(f"\n{results['num_users']} test users x (1 + 20) candidates on {data_dir}")
    for stage, seconds in results["stage_seconds"].items():
        print(f"stage {stage:20s} wall {seconds['wall']:7.1f} s  CPU {seconds['cpu']:7.1f} s")
    for name, row in results["models"].items():
        low, high = row["ci"]["auc"]
        extra = f", {row['epochs_trained']} epochs" if "epochs_trained" in row else ""
        extra += ", sampled softmax" if row.get("sampled_softmax") else ""
        print(f"{name:12s} AUC {row['metrics']['auc']:.4f} [{low:.3f}, {high:.3f}]{extra}")
    print(f"total wall {wall:.1f} s, CPU {usage.ru_utime + usage.ru_stime:.1f} s (this process)")
    print(f"ratio={wall / TIME_LIMIT_S:.2f}")


if __name__ == "__main__":
    main()
