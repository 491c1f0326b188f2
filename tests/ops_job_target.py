"""dispatch_job as a deployment's code location builds it with another executor (here the multiprocess
executor, standing in for Celery or Kubernetes), resources from the environment. A step process loads
this file by path to rebuild the job, so it imports only the project."""

import dagster as dg

from vpp_pipeline.definitions import build_definitions


def ops_job_on_the_multiprocess_executor() -> dg.JobDefinition:
    # spawn: a fresh interpreter with the test's environment (a forkserver may predate it)
    executor = dg.multiprocess_executor.configured({"start_method": {"spawn": {}}})
    return build_definitions(ops_executor=executor).get_job_def("dispatch_job")
