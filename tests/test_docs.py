"""The project's Markdown pages link to files and headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the hand-written pages, found rather than listed so that a new one is checked too
# (benchmarks/results/*.md are generated)
PAGES = sorted(
    str(page.relative_to(ROOT))
    for pattern in ("README.md", "benchmarks/README.md", "docs/*.md", "infra/**/README.md")
    for page in ROOT.glob(pattern)
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.*)$", re.MULTILINE)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file or heading does not exist."""
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file, _, fragment = target.partition("#")
        linked = (page.parent / file) if file else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif (
            fragment
            and linked.suffix == ".md"
            and fragment not in {anchor(h) for h in HEADING.findall(linked.read_text())}
        ):
            broken.append(f"{target} (no such heading)")
    return broken


def test_anchor_follows_github() -> None:
    assert anchor("One GPU: a training epoch in bf16") == "one-gpu-a-training-epoch-in-bf16"
    assert anchor("The embedded dataset: `stamps`") == "the-embedded-dataset-stamps"
    assert anchor("CPU kernels, memory format, bf16") == "cpu-kernels-memory-format-bf16"


def test_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-heading) [gone](missing.md) [bad](other.md#nowhere) [web](https://example.org)\n")
    assert broken_links(page) == ["missing.md (no such file)", "other.md#nowhere (no such heading)"]


@pytest.mark.parametrize("name", PAGES)
def test_page_links_resolve(name: str) -> None:
    assert broken_links(ROOT / name) == []
