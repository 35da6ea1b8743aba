"""The manual (docs/, mkdocs.yml) builds with `mkdocs build --strict`: any warning is an error.

mkdocs-material needs a newer `requests` than torchattacks' pin (requests~=2.25.1), so the docs
toolchain cannot share the test environment. It lives in `.venv-docs` at the repository root,
created here from docs/requirements.txt on first use (and again when that file changes), so that
the README's one test command, which `.ci/run` runs, also builds the docs.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]

DOCS_VENV = REPO / ".venv-docs"
REQUIREMENTS = REPO / "docs" / "requirements.txt"


def docs_python():
    """The docs environment's interpreter, installed from docs/requirements.txt if needed."""
    python = DOCS_VENV / "bin" / "python"
    stamp = DOCS_VENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    with FileLock(str(REPO / ".venv-docs.lock")):  # two test runs must not build it at once
        if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(DOCS_VENV)], check=True)
            install = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                capture_output=True, text=True)
            assert install.returncode == 0, f"installing the docs toolchain failed:\n{install.stderr}"
            stamp.write_text(wanted)
    return python


def mkdocs_build(config_dir, site_dir):
    return subprocess.run(
        [str(docs_python()), "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=config_dir, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_manual_builds_in_strict_mode(tmp_path):
    build = mkdocs_build(REPO, tmp_path / "site")
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    assert (tmp_path / "site" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path):
    """Strict mode is on: the same manual with one link to a missing page does not build."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    missing = f"absent-{tmp_path.name}.md"  # a page name no checkout has
    with open(tmp_path / "docs" / "index.md", "a") as page:
        page.write(f"\nSee [a page that does not exist]({missing}).\n")
    build = mkdocs_build(tmp_path, tmp_path / "site")
    assert build.returncode != 0
    assert missing in build.stdout + build.stderr
