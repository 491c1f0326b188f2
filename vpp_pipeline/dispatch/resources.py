"""Dagster resources of the dispatch path: the ops store and the site controllers (never DuckDB)."""

from __future__ import annotations

import os

import dagster as dg

from vpp_pipeline import settings
from vpp_pipeline.dispatch.delivery import (
    DEFAULT_SITE_CONTROLLER_TOKEN,
    DEFAULT_SITE_CONTROLLER_URL,
    SiteControllerClient,
)
from vpp_pipeline.ops import DEFAULT_OPS_DB_PATH, OpsStore


class OpsStoreResource(dg.ConfigurableResource):
    """The SQLite ops store (``VPP_OPS_DB_PATH``, default ``data/ops.sqlite``)."""

    path: str = DEFAULT_OPS_DB_PATH

    def store(self) -> OpsStore:
        return OpsStore(self.path)


class SiteControllerResource(dg.ConfigurableResource):
    """The site controllers' HTTP API (GUIDE section 7); ``token`` is a Bearer token (``dg.EnvVar``)."""

    base_url: str = DEFAULT_SITE_CONTROLLER_URL
    token: str = DEFAULT_SITE_CONTROLLER_TOKEN
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 4.0

    def client(self) -> SiteControllerClient:
        return SiteControllerClient(
            self.base_url,
            self.token,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_initial_s=self.backoff_initial_s,
            backoff_max_s=self.backoff_max_s,
        )


def _env_or_default(name: str, default: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def ops_store_resource(path: str | None = None) -> OpsStoreResource:
    if path is not None:
        return OpsStoreResource(path=str(path))
    return OpsStoreResource(path=settings.env("VPP_OPS_DB_PATH", DEFAULT_OPS_DB_PATH))


def site_controller_resource() -> SiteControllerResource:
    return SiteControllerResource(
        base_url=_env_or_default("SITE_CONTROLLER_URL", DEFAULT_SITE_CONTROLLER_URL),
        token=_env_or_default("SITE_CONTROLLER_TOKEN", DEFAULT_SITE_CONTROLLER_TOKEN),
    )
