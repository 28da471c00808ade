"""The documentation holds together: README.md, CHANGELOG.md and docs/ link only to what exists.

Docs go stale quietly (a page renamed, a module moved to another package), and CI runs whatever
command README.md's test-command block holds, so a README edit can break CI. Checked here:
- every relative link and image in README.md, CHANGELOG.md and docs/*.md points to a file that
  exists in the repository, and every `#anchor` into a Markdown page to one of its headings
  (GitHub's heading ids);
- every docs/ page can be reached from README.md by following links, every docs/ page the code
  cites exists, and docs/benchmarks.md names every benchmark in tests/benchmarks/;
- repository paths (`app/splitter.py`) and module paths (`qwq_chat.app.sandbox.server`) written as
  inline code name files and modules that exist, and none uses the old bare `app.`/`convert.` names;
- the chat-screen pictures in docs/images/ are the TUI snapshots they were copied from;
- .ci/run's own awk rule still finds exactly one test command in README.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SNAPSHOTS = REPO / "tests" / "tui" / "__snapshots__" / "test_tui_snapshots"

# docs/images/ file -> the snapshot test's SVG it is a copy of (tests/tui/test_tui_snapshots.py).
PICTURES = {
    "chat-screen.svg": "test_snapshot_answer_with_collapsed_reasoning.svg",
    "chat-reasoning-expanded.svg": "test_snapshot_reasoning_expanded.svg",
}

# The repository folders the `qwq_chat` namespace maps (pyproject.toml's package-dir).
NAMESPACE = {"app": "app", "convert": "convert", "rl_finetune": "rl_finetune", "assets": "assets"}
TOP_FOLDERS = (*NAMESPACE, "packaging", "tests", "docs")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK_TARGET = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HTML_TARGET = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
REPO_PATH = re.compile(rf"(?:{'|'.join(TOP_FOLDERS)})/[\w./-]*")
MODULE_PATH = re.compile(r"qwq_chat(?:\.\w+)*")
OLD_MODULE = re.compile(rf"(?:{'|'.join(NAMESPACE)})\.[A-Za-z_]\w*(?:\.\w+)*")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", REPO / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where link syntax is only an example."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def link_targets(text: str) -> list[str]:
    body = prose(text)
    found = LINK_TARGET.findall(body) + REFERENCE_DEF.findall(body) + HTML_TARGET.findall(body)
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def github_anchors(text: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces to '-'."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, title in HEADING.findall(FENCE.sub("", text)):
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link shows its text
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def resolve(source: Path, target: str) -> tuple[Path, str]:
    """(file the link points to, its #anchor or '') for a relative link written in `source`."""
    path, _, anchor = unquote(target).partition("#")
    return (source if not path else (source.parent / path).resolve()), anchor


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_docs_folder_has_the_pages_the_readme_promises() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    pages = {
        resolve(REPO / "README.md", t)[0]
        for t in link_targets(readme)
        if t.split("#")[0].startswith("docs/") and t.split("#")[0].endswith(".md")
    }
    assert pages, "README.md links to no docs/ page"
    missing = sorted(rel(p) for p in pages if not p.is_file())
    assert not missing, f"README.md links to docs pages that do not exist: {missing}"


def test_every_relative_link_points_to_something_that_exists() -> None:
    broken = []
    for md in markdown_files():
        text = md.read_text(encoding="utf-8")
        for target in link_targets(text):
            path, anchor = resolve(md, target)
            where = f"{rel(md)}: ({target})"
            if not path.is_relative_to(REPO):
                broken.append(f"{where} leaves the repository")
            elif not path.exists():
                broken.append(f"{where} -> {rel(path)} does not exist")
            elif (
                anchor
                and path.suffix == ".md"
                and anchor not in github_anchors(path.read_text(encoding="utf-8"))
            ):
                broken.append(f"{where} -> no heading with id #{anchor} in {rel(path)}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached: set[Path] = set()
    todo = [REPO / "README.md"]
    while todo:
        md = todo.pop()
        if md in reached or not md.is_file():
            continue
        reached.add(md)
        for target in link_targets(md.read_text(encoding="utf-8")):
            path, _ = resolve(md, target)
            if path.suffix == ".md":
                todo.append(path)
    orphans = sorted(rel(p) for p in DOCS.rglob("*.md") if p.resolve() not in reached)
    assert not orphans, f"docs pages no link from README.md leads to: {orphans}"


def test_paths_and_modules_in_inline_code_exist() -> None:
    problems = []
    for md in markdown_files():
        spans = [s.strip() for _, s in CODE_SPAN.findall(FENCE.sub("", md.read_text("utf-8")))]
        for span in spans:
            if REPO_PATH.fullmatch(span.split(":")[0]):
                if not (REPO / span.split(":")[0]).exists():
                    problems.append(f"{rel(md)}: `{span}` does not exist")
            elif MODULE_PATH.fullmatch(span.removesuffix("()")):
                if not module_exists(span.removesuffix("()")):
                    problems.append(f"{rel(md)}: `{span}` is no module or module attribute")
            elif OLD_MODULE.fullmatch(span.removesuffix("()")) and not re.search(
                r"\.(py|md|toml|txt|json|jsonl|yaml|svg|png)$", span
            ):
                problems.append(
                    f"{rel(md)}: `{span}` uses the old bare name; write qwq_chat.{span}"
                )
    assert not problems, "stale code references:\n" + "\n".join(problems)


def module_exists(dotted: str) -> bool:
    """Does `qwq_chat.a.b[.name]` name a module of the repository, or a name defined in one?"""
    parts = dotted.split(".")[1:]
    if not parts:
        return True  # `qwq_chat` itself: a namespace with no folder of its own
    if parts[0] not in NAMESPACE:
        return False
    base = REPO / NAMESPACE[parts[0]]
    for i in range(len(parts), 0, -1):
        source = module_source(base, parts[1:i])
        if source is None:
            continue
        rest = parts[i:]
        if not rest:
            return True
        name = re.escape(rest[0])
        defined = rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b|^{name}\s*[:=]"
        return len(rest) == 1 and bool(re.search(defined, source.read_text("utf-8"), re.MULTILINE))
    return False


def module_source(base: Path, names: list[str]) -> Path | None:
    """The file that defines the module `names` under the package folder `base`, if any."""
    folder = base.joinpath(*names)
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    if names and folder.with_suffix(".py").is_file():
        return folder.with_suffix(".py")
    return None


def test_docs_pages_named_in_the_code_exist() -> None:
    """Comments and messages cite docs pages (`docs/chat.md`); a renamed page must not strand them."""
    stale = []
    for folder in (*NAMESPACE.values(), "packaging", "tests"):
        for source in sorted((REPO / folder).rglob("*")):
            if source.suffix not in {".py", ".toml", ".sh", ".ps1", ".spec", ".yaml", ".tcss"}:
                continue
            # (a path inside another project, like vendor/llama.cpp/docs/x.md, is not ours)
            text = source.read_text("utf-8")
            for page in set(re.findall(r"(?<![\w./-])docs/[\w./-]+\.md\b", text)):
                if not (REPO / page).is_file():
                    stale.append(f"{rel(source)} cites {page}, which does not exist")
    assert not stale, "\n".join(stale)


def test_benchmarks_page_covers_every_benchmark() -> None:
    page = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    benchmarks = sorted(p.name for p in (REPO / "tests" / "benchmarks").glob("test_*.py"))
    assert benchmarks, "tests/benchmarks/ has no benchmarks"
    missing = [name for name in benchmarks if f"`{name}`" not in page]
    assert not missing, f"docs/benchmarks.md does not describe {missing}"


@pytest.mark.parametrize("picture", sorted(PICTURES))
def test_pictures_are_the_current_tui_snapshots(picture: str) -> None:
    copy, snapshot = DOCS / "images" / picture, SNAPSHOTS / PICTURES[picture]
    assert snapshot.is_file(), f"{rel(snapshot)} is gone: pick another snapshot for {rel(copy)}"
    assert copy.read_bytes() == snapshot.read_bytes(), (
        f"{rel(copy)} is not the current TUI snapshot; after reviewing the snapshot, run "
        f"cp {rel(snapshot)} {rel(copy)}"
    )


def test_ci_finds_the_readme_test_command() -> None:
    awk = shutil.which("awk")
    if awk is None:
        pytest.skip("no awk on this machine (.ci/run uses it)")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    rule = re.search(r"awk '([^']+)' README\.md", ci)
    assert rule, ".ci/run no longer reads README.md with awk: update this test"
    done = subprocess.run(
        [awk, rule.group(1), "README.md"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one command line after the marker, got: {lines}"
    assert "pip install" in lines[0] and "python -m pytest" in lines[0], lines[0]

    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    marker = [i for i, line in enumerate(readme) if "<!-- test-command -->" in line]
    assert len(marker) == 1, "README.md must have exactly one <!-- test-command --> marker"
    assert readme[marker[0] + 1] == "```sh", "the ```sh fence must follow the marker line directly"
