"""The documentation a user has is the repository's own: every rule a test or the code
cites is stated in ``docs/contract.md``, and no page points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "contract.md"
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
CITING = ["tests", "wsp_async", "examples", "benchmarks"]


def _rules_stated() -> set[str]:
    """The rule numbers that ``contract.md`` has a heading for: ``## S4 — …``, ``### S4.2``."""
    stated = set()
    for line in CONTRACT.read_text().splitlines():
        m = re.match(r"#{2,3} (S\d+(?:\.\d+)?)\b", line)
        if m:
            stated.add(m.group(1))
    return stated


def _citations() -> dict[str, list[str]]:
    """Every ``SPEC S…`` citation (and each rule of a list such as ``SPEC S6.1, S6.3``)."""
    cited: dict[str, list[str]] = {}
    files = [p for top in CITING for p in sorted((ROOT / top).rglob("*.py"))]
    files += [p for p in PAGES if p != CONTRACT]
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in re.finditer(
                r"SPEC ((?:S\d+(?:\.\d+)?(?:[-–]S?\d+(?:\.\d+)?)?[,/ ]*(?:and )?)+)", line
            ):
                for rule in re.findall(r"S\d+(?:\.\d+)?", m.group(1)):
                    cited.setdefault(rule, []).append(f"{path.relative_to(ROOT)}:{n}")
    return cited


def test_the_contract_states_every_rule_s0_to_s17() -> None:
    stated = _rules_stated()
    assert {f"S{n}" for n in range(18)} <= stated


def test_every_cited_rule_resolves_in_the_contract() -> None:
    cited = _citations()
    assert len(cited) > 50  # the citations were found at all
    missing = {rule: where[:3] for rule, where in cited.items() if rule not in _rules_stated()}
    assert missing == {}


def test_no_page_points_outside_the_repository() -> None:
    outside = []
    for page in PAGES:
        text = page.read_text()
        for needle in ("../shared", "SPEC.md", "REDESIGN.md"):
            if needle in text:
                outside.append(f"{page.name}: {needle}")
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue  # a web address, not a file of ours
            if not (page.parent / target).resolve().exists():
                outside.append(f"{page.name}: link to {target}")
    assert outside == []


def test_the_changelog_leads_with_the_packages_version() -> None:
    # A release-ready package: the version it installs as is the changelog's newest entry.
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0] == version
