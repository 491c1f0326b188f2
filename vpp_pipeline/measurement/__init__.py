"""Measurement: baselines, event performance, underperformer flags and baseline accuracy.

The heavy work is SQL in ``sql/`` run by :mod:`vpp_pipeline.measurement.models`; this
package holds the per-program parameters (:mod:`.config`), the NERC holiday calendar
(:mod:`.nerc_holidays`), the dispatch-search staging frames (:mod:`.dispatch_frames`) and
the demo summary (:func:`performance_summary`).
"""

from vpp_pipeline.measurement.config import MeasurementConfig, load_measurement_config
from vpp_pipeline.measurement.summary import performance_summary

__all__ = ["MeasurementConfig", "load_measurement_config", "performance_summary"]
