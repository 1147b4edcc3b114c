"""Long fixture builds show their progress: on the terminal despite pytest's capturing, one
line per step with the elapsed time, and the llama.cpp build's own percentages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import progress

TESTS_DIR = Path(__file__).resolve().parent


def test_progress_lines_reach_the_terminal_while_output_is_captured(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS_DIR)!r})
            import progress

            def pytest_configure(config):
                progress.attach(config)
            """
        )
    )
    (tmp_path / "test_slow_fixture.py").write_text(
        textwrap.dedent(
            """
            import pytest
            import progress

            @pytest.fixture(scope="session")
            def built():
                print("ordinary output, captured")
                step = progress.Steps("fake-build")
                step("downloading sources")
                step("compiling")
                return True

            def test_uses_it(built):
                assert built
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[fake-build +0s] downloading sources" in result.stdout
    assert "[fake-build +0s] compiling" in result.stdout
    assert "ordinary output, captured" not in result.stdout  # capturing is still on


def test_llama_build_step_reports_its_percentages(monkeypatch: pytest.MonkeyPatch) -> None:
    from llama import build_llama_server as builder

    lines: list[str] = []
    monkeypatch.setattr(builder, "sink", lines.append)
    fake_cmake = "for i in range(101): print(f'[{i:3d}%] Building CXX object obj{i}.o')"
    builder._run([sys.executable, "-c", fake_cmake], timeout=60, what="cmake build")
    percents = [line for line in lines if "cmake build: [" in line]
    assert len(percents) == 101 // builder.PROGRESS_STEP + 1
    assert "[100%] Building CXX object obj100.o" in percents[-1]
    assert all(line.startswith("[llama-build +") for line in lines)
    assert "cmake build: done in" in lines[-1]


def test_llama_build_step_failure_keeps_the_output_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    from llama import build_llama_server as builder

    monkeypatch.setattr(builder, "sink", lambda line: None)
    failing = "import sys; print('error: no compiler'); sys.exit(2)"
    with pytest.raises(builder.LlamaUnavailable, match=r"exit 2\):\nerror: no compiler"):
        builder._run([sys.executable, "-c", failing], timeout=60, what="cmake configure")


def test_claude_code_install_relays_progress(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from e2e import harness

    installer = tmp_path / "fake_installer.py"
    installer.write_text(
        "import sys\n"
        "print('[install_claude_code] npm install @anthropic-ai/claude-code ...', file=sys.stderr)\n"
        "print('/opt/fake/claude')\n"
    )
    shown: list[str] = []
    monkeypatch.setattr(harness, "INSTALLER", installer)
    monkeypatch.setattr(progress, "show", shown.append)
    assert harness.install_cli("default") == Path("/opt/fake/claude")
    assert shown == ["[claude-code default +0s] npm install @anthropic-ai/claude-code ..."]
