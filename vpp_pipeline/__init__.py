"""vpp-pipeline: the data platform for C&I virtual power plants on Leap.

The library lives here (Leap client, sandbox, stores, domain logic, Dagster resources and
definitions); Dagster asset definitions live in the top-level ``assets`` package and SQL
models in ``sql/``.
"""

__version__ = "0.1.0"
