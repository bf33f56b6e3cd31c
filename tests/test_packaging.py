"""What a user sees of the package before running it: its metadata, the
install, and the test runner's report of what it skipped."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_description_promises_only_what_the_readme_documents() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    description = project["description"].lower()
    readme = (ROOT / "README.md").read_text()
    # what the description may name -> how the README shows it is there
    documented = {
        "smpp": "SMPP 3.4" in readme,
        "tingg": "**Tingg Engage**" in readme,
        "tilil": "**Tilil**" in readme,
        "messangi": "**Messangi**" in readme,
        "tingting": "**TingTing**" in readme,
        "email": 'channel: "email"' in readme,
        "voice": 'channel: "voice"' in readme and "not_configured" not in readme.split('channel: "voice"')[1][:200],
        "one-time codes": "### One-time codes" in readme,
    }
    for name, there in documented.items():
        if not there:
            assert name not in description, f"the description promises {name}, which the README does not document"
    for name in ("smpp", "tingg", "tilil"):
        assert name in description, name
    assert project["license"] == "Apache-2.0"  # the SPDX string, not the deprecated table


def test_the_test_runner_shows_why_tests_were_skipped() -> None:
    script = (ROOT / "scripts" / "test").read_text()
    runs = [line for line in script.splitlines() if "-m pytest" in line and not line.lstrip().startswith("#")]
    assert runs and all(" -rs" in line for line in runs), runs


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*args, "--no-deps", "--disable-pip-version-check"], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0 and "No matching distribution" in out.stderr:
        pytest.skip(f"setuptools for the build environment cannot be had here: {out.stderr.strip()[-300:]}")
    assert out.returncode == 0, out.stderr
    return out


def _warnings(out: subprocess.CompletedProcess[str]) -> list[str]:
    lines = (out.stdout + out.stderr).splitlines()
    # "Location 'file://...' is ignored" is this machine's pip index configuration, not the build
    return [line for line in lines if ("warning" in line.lower() or "deprecat" in line.lower())
            and "Location 'file://" not in line]


def test_building_and_installing_the_package_give_no_warning(tmp_path: Path) -> None:
    """A wheel, and the editable install scripts/setup makes (each in a build
    environment with the setuptools pyproject.toml asks for)."""
    src = tmp_path / "src"  # a copy: building writes build/ beside the sources
    # (without what tests running beside this one write meanwhile: a file gone mid-copy fails it)
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", "node_modules", "ujumbe-data", "build", "*.egg-info", ".git", "__pycache__", ".pytest_cache",
        ".hypothesis", "test-artefacts", "out"))
    built = _pip(sys.executable, "-m", "pip", "wheel", "-w", str(tmp_path / "wheel"), str(src))
    assert not _warnings(built), _warnings(built)
    (wheel,) = (tmp_path / "wheel").glob("ujumbe-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata

    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    installed = _pip(str(tmp_path / "venv" / "bin" / "pip"), "install", "-e", str(src))
    assert not _warnings(installed), _warnings(installed)


def test_no_benchmark_hides_a_standard_library_module() -> None:
    # A benchmark's folder is first on its sys.path: bench/email.py once hid
    # the email package, and every benchmark that imported httpx crashed.
    clashes = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.stem in sys.stdlib_module_names)
    assert not clashes, f"rename these benchmarks, they shadow the standard library: {clashes}"
