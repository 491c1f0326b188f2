"""Dagster definitions by stage: connect, manage (later: dispatch, analyze, bid).

Thin: each asset calls into ``vpp_pipeline`` or runs a model from ``sql/``.
"""
