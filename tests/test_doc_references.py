"""Every repository path that code or docs cite exists.

Scanned: Python docstrings and comments, Markdown files, YAML files (mkdocs.yml, presets, studies)
and shell scripts. A citation is a path under one of the repository's own folders (`docs/...`,
`results/...`, `bench/...`, `tests/...`, `zubov_bench/...`, `baselines/...`), a bare Markdown file
name (which must exist somewhere in the repository), or a relative Markdown link.
Placeholders (`results/<preset>/`, `results/NAME/`, `{png,pdf}`) are not citations; a `*` must
match at least one file.
"""
from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("docs", "results", "bench", "tests", "zubov_bench", "baselines", ".ci")
PATH = re.compile(r"(?<![\w.~/-])((?:%s)/[^\s`'\"()\[\],;]*)" % "|".join(re.escape(r) for r in ROOTS))
BARE_MARKDOWN = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
PLACEHOLDER = re.compile(r"[<>{}$…]|\.\.\.|(?:^|/)[A-Z][A-Z_-]*(?:/|$)")
# Folders that commands write on a user's machine; the docs name them as outputs, not as files here.
OUTPUT_FOLDERS = (
    "results/eval",  # `zubov-bench eval`'s default --out
    "results/ablation",  # the example study of docs/sweep.md
    "results/mine",  # the example preset of docs/reproduce.md
)
SUFFIXES = {".py", ".md", ".yml", ".yaml", ".sh"}


def repository_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    return [REPO / name for name in listed
            if name and Path(name).suffix in SUFFIXES and (REPO / name).is_file()]


def python_prose(source: str) -> str:
    """Docstrings and comments of a Python file: where it cites documents, not where it uses paths."""
    parts = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            parts.append(ast.get_docstring(node, clean=False) or "")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            parts.append(token.string)
    return "\n".join(parts)


def cited_paths(text: str) -> set[str]:
    paths = set()
    for match in PATH.finditer(text):
        path = match.group(1).split("::")[0].rstrip(".:!?")  # a pytest node id names its file
        if PLACEHOLDER.search(path) or path.rstrip("/").startswith(OUTPUT_FOLDERS):
            continue
        paths.add(path.split("#")[0])
    return paths


def broken_references(file: Path, basenames: set[str]) -> list[str]:
    text = file.read_text(encoding="utf-8", errors="replace")
    prose = python_prose(text) if file.suffix == ".py" else text
    broken = []
    for path in sorted(cited_paths(prose)):
        found = list(REPO.glob(path.rstrip("/"))) if "*" in path else [REPO / path]
        if not any(p.exists() for p in found):
            broken.append(path)
    for name in sorted(set(BARE_MARKDOWN.findall(prose))):
        if name not in basenames:
            broken.append(f"{name} (no such file anywhere in the repository)")
    if file.suffix == ".md":
        for target in MARKDOWN_LINK.findall(text):
            if re.match(r"[a-z][a-z+.-]*:", target) or target.startswith("#"):
                continue  # a URL, or an anchor on the same page (mkdocs --strict checks anchors)
            if not (file.parent / target.split("#")[0]).exists():
                broken.append(f"link ({target})")
    return broken


def test_every_cited_path_exists():
    files = repository_files()
    basenames = {f.name for f in files} | {p.name for p in REPO.rglob("*.md") if ".venv" not in p.parts}
    problems = {str(f.relative_to(REPO)): broken_references(f, basenames) for f in files}
    problems = {name: refs for name, refs in problems.items() if refs}
    assert not problems, "cited paths that do not exist:\n" + "\n".join(
        f"  {name}: {', '.join(refs)}" for name, refs in sorted(problems.items()))


@pytest.mark.parametrize("text, broken", [
    ('"""Reconstructed as in ZUBOV_NET.md §2."""\n', "ZUBOV_NET.md"),
    ('"""See docs/{missing}.md."""\n', "docs/{missing}.md"),
    ("x = 1  # measured in bench/{missing}.md\n", "bench/{missing}.md"),
])
def test_a_missing_citation_is_reported(tmp_path, text, broken):
    missing = f"absent-{tmp_path.name}"  # a page name no checkout has
    module = tmp_path / "module.py"
    module.write_text(text.format(missing=missing))
    assert any(ref.startswith(broken.format(missing=missing)) for ref in broken_references(module, {"README.md"}))


def test_a_broken_relative_link_is_reported(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# there\n")
    page.write_text("[fine](there.md#top), [web](https://example.org), [gone](gone.md)\n")
    broken = broken_references(page, {"there.md", "page.md"})
    assert [ref for ref in broken if ref.startswith("link")] == ["link (gone.md)"]


def test_placeholders_and_outputs_are_not_citations():
    text = "results/<preset>/, results/NAME/, figures/roa.{png,pdf}, results/eval/records.jsonl"
    assert cited_paths(text) == set()


HEADLINE = "zubov-bench table --results results/fashion-mnist --worst-case --only autoattack,worst-case"


def test_the_readme_headline_table_is_the_generated_one():
    """The README copies one generated table; it names the command, and the copy is still its output."""
    from click.testing import CliRunner

    from zubov_bench.cli import main

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert HEADLINE in readme
    start, end = "<!-- headline table: generated, do not edit by hand -->\n", "<!-- end of headline table -->"
    copied = readme[readme.index(start) + len(start):readme.index(end)]
    result = CliRunner().invoke(main, HEADLINE.split()[1:])
    assert result.exit_code == 0, result.output
    assert copied.strip() == result.stdout.strip()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    test_commands = [line for line in readme if line.startswith("python3 -m venv") and "pytest" in line]
    assert len(test_commands) == 1, test_commands
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == test_commands[0]
