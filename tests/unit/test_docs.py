"""The documentation stays true: every link resolves, every setting is documented, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from animegan_api.config import Settings

REPO = Path(__file__).resolve().parents[2]
PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "deploy/README.md",
    REPO / "weights/README.md",
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", _prose(page), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def _links(page: Path) -> list[str]:
    return [target for target in LINK.findall(_prose(page)) if not re.match(r"[a-z]+:", target)]


def _prose(page: Path) -> str:
    """The page without its code blocks: a shell comment is no heading, and code holds no links."""
    return re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_link_resolves(page: Path) -> None:
    for target in _links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(linked), f"{page.name}: {target} has no heading #{anchor}"


def test_the_docs_link_each_other_and_the_readme_links_every_page() -> None:
    readme = _links(REPO / "README.md")
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README does not link {page.name}"


def test_every_setting_is_documented() -> None:
    documented = (REPO / "docs/configuration.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`ANIMEGAN_{name.upper()}`" not in documented]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_the_readme_stays_short() -> None:
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
