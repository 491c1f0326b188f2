"""The SQL models ship with the package, so a non-editable install finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from vpp_pipeline.warehouse import sql_text

ROOT = Path(__file__).resolve().parent.parent


def test_every_sql_model_is_in_the_wheel(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("vpp_pipeline-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql_file in (ROOT / "sql").glob("*.sql"):
        assert f"vpp_pipeline/sql_models/{sql_file.name}" in names
    assert "assets/connect.py" in names
    assert "vpp_pipeline/config/tariffs.toml" in names
    for migration in (ROOT / "vpp_pipeline" / "ops" / "migrations").glob("*/*.sql"):
        assert f"vpp_pipeline/ops/migrations/{migration.parent.name}/{migration.name}" in names


def test_sql_text_reads_the_models():
    assert "CREATE OR REPLACE TABLE meters" in sql_text("meters")


def test_every_package_folder_is_listed_in_pyproject():
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("vpp_pipeline", "assets")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert folders <= listed, folders - listed
