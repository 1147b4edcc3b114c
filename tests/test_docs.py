"""The documentation stays true: one install/run/test line used everywhere (and by CI), one
place per topic, figures quoted from BENCHMARKS.md, links that resolve, a real licence."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
CI_RUN = ROOT / ".ci" / "run"
BENCHMARKS = ROOT / "BENCHMARKS.md"
ALL_DOCS = (README, *sorted((ROOT / "docs").glob("*.md")))


def _setup_lines() -> list[str]:
    """The commands of the README's set-up block, without their comments."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Set-up") :]
    start = section.index("```bash\n") + len("```bash\n")
    block = section[start : section.index("```", start)]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _code_lines(path: Path) -> list[str]:
    lines: list[str] = []
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if inside:
            lines.append(line)
    return lines


def test_setup_is_three_lines_install_run_test() -> None:
    install, run, test = _setup_lines()
    # A virtualenv made in the same line: no PEP 668 refusal, nothing installed system-wide.
    assert install == 'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"'
    assert run.endswith(".venv/bin/claude-code-proxy")
    assert test == ".venv/bin/pytest"


def test_ci_runs_the_readme_lines_as_written() -> None:
    install, _, test = _setup_lines()
    ci_lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    assert install in ci_lines
    assert test in ci_lines
    # pytest's "no tests collected" must not pass as green.
    assert 'if [ "$status" -eq 5 ]' in CI_RUN.read_text(encoding="utf-8")


def test_every_install_command_in_the_docs_is_the_readme_line() -> None:
    install = _setup_lines()[0]
    for path in ALL_DOCS:
        for line in _code_lines(path):
            if "pip install" in line:
                assert line.split("  #", 1)[0].strip() == install, (path.name, line)


def test_each_topic_has_one_place() -> None:
    """docs/cli.md is the command reference; quick starts, troubleshooting, Docker and the
    configuration table live in the README only."""
    cli = CLI_DOC.read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    for heading in ("## Quick starts per provider", "## Troubleshooting", "## Docker"):
        assert heading in readme
        assert heading not in cli
    assert "The first five minutes" not in cli
    # Long paragraphs are not copied between the two files.
    paragraphs = {p.strip() for p in readme.split("\n\n") if len(p.strip()) > 200}
    copied = [p for p in cli.split("\n\n") if p.strip() in paragraphs]
    assert copied == []


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_local_links_resolve() -> None:
    for path in ALL_DOCS:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            file_part, _, fragment = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            assert linked.exists(), (path.name, target)
            if fragment and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                assert fragment in {_anchor(h) for h in headings}, (path.name, target)


def test_readme_performance_figures_are_benchmarks_current_figures() -> None:
    readme = README.read_text(encoding="utf-8")
    bench = BENCHMARKS.read_text(encoding="utf-8")
    heading = "## Current figures (2026-12-06)"
    assert bench.count("## Current figures") == 1
    current = bench[bench.index(heading) :]
    current = current[: current.index("\n## ", 1)]
    performance = readme[readme.index("## Performance and scaling") :]
    performance = performance[: performance.index("\n## ", 1)]
    assert "2026-12-06" in performance
    # Each figure the README quotes, and the row of the current table it comes from.
    quoted = {
        "1.46 ms of proxy CPU per 200-chunk stream": "| proxy CPU ≤ 5 ms per 200-chunk stream (c=50) | 1.46 ms | met |",
        "translated in\n31 µs": "| translate_request, Claude Code fixture (52 KB, 12 tools) | 31.40 µs/call |",
        "1.09× the direct time": "| 500 slow streams wall time ≤ 1.2× direct | 1.09× (2.22 vs 2.04 s) | met |",
        "70 MB peak RSS": "| proxy peak RSS ≤ 150 MB at 500 slow streams | 70 MB | met |",
    }
    for claim, row in quoted.items():
        assert claim in performance, claim
        assert row in current, row


def test_licence_is_the_full_mit_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 claude-code-proxy developers\n")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert "The above copyright notice and this permission notice shall be included" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
