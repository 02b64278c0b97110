"""Stage 4: metrics, baselines and the report.

Takes one test split and every model's scores on exactly its rows; trains popularity, SASRec and GRU4Rec on the
protocol's training interactions. Leaves ``results.json``, ``report.md`` and PNG plots. Run by
``recipes/evaluate.py`` and the demo.
"""
