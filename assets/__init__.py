"""Dagster definitions by stage: connect, manage, analyze (later: dispatch, bid).

Thin: each asset calls into ``vpp_pipeline`` or runs a model from ``sql/``.
"""

import warnings

# Two Dagster features used on purpose: single-run backfills of interval_reads and checks
# scoped to the partitions of a run. Their beta/preview notices would print on every load.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function")
warnings.filterwarnings("ignore", message=r"Specifying a partitions_def on an AssetCheckSpec")
