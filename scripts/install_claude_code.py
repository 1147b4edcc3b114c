#!/usr/bin/env python3
"""Install the real Claude Code CLI from npm into a cache directory (for the e2e tests).

Labels:
  latest   the version behind the npm ``latest`` dist-tag, forced with ``@<version>``
           (on Node < 22 npm prints an EBADENGINE warning; the package ships a native binary).
  default  whatever a plain ``npm install @anthropic-ai/claude-code`` picks on this Node.

The install lives in ``--cache-dir`` (default ``$CCP_E2E_CACHE/<label>``, else
``~/.cache/claude-code-proxy-e2e/<label>``). If the resolved version is already installed there
and ``claude --version`` works, nothing is downloaded. On success the binary's absolute path is
printed on stdout (the only stdout line); progress goes to stderr.

Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 npm missing or could not install
(registry unreachable), 4 installed but the binary does not run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "@anthropic-ai/claude-code"
PLATFORM_PACKAGE = "@anthropic-ai/claude-code-linux-x64"
LABELS = ("latest", "default")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NPM_UNAVAILABLE = 3
EXIT_BINARY_BROKEN = 4

RESOLVE_TIMEOUT = 90.0
INSTALL_TIMEOUT = 1800.0
VERSION_TIMEOUT = 120.0


class NpmUnavailable(Exception):
    """npm is missing or could not reach the registry / install the package."""


def log(msg: str) -> None:
    """Write a progress line to stderr."""
    print(f"[install_claude_code] {msg}", file=sys.stderr, flush=True)


def npm_env() -> dict[str, str]:
    """Environment for npm: non-interactive, no update notifier, no funding noise."""
    env = dict(os.environ)
    env.update(
        CI="true",
        NPM_CONFIG_UPDATE_NOTIFIER="false",
        NPM_CONFIG_FUND="false",
        NPM_CONFIG_AUDIT="false",
        NPM_CONFIG_YES="true",
        # Fail fast when the registry is unreachable instead of retrying for minutes.
        NPM_CONFIG_FETCH_RETRIES="1",
        NPM_CONFIG_FETCH_RETRY_MINTIMEOUT="2000",
        NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT="5000",
    )
    return env


def run_npm(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run npm with no stdin; raise NpmUnavailable if npm is missing or times out."""
    npm = shutil.which("npm")
    if npm is None:
        raise NpmUnavailable("npm not found on PATH")
    try:
        return subprocess.run(
            [npm, *args],
            cwd=cwd,
            env=npm_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NpmUnavailable(f"npm {' '.join(args)} timed out after {timeout:.0f}s") from exc


def write_package_json(directory: Path) -> None:
    """Create a minimal private package.json so npm installs locally into ``directory``."""
    pkg = directory / "package.json"
    if not pkg.exists():
        pkg.write_text(
            json.dumps({"name": "ccp-e2e-claude-code", "version": "0.0.0", "private": True}) + "\n"
        )


def resolve_latest() -> str | None:
    """Return the npm ``latest`` dist-tag version, or None if ``npm view`` fails."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = run_npm(["view", PACKAGE, "dist-tags.latest"], Path(tmp), RESOLVE_TIMEOUT)
    version = proc.stdout.strip().strip('"')
    if proc.returncode != 0 or not version:
        log(f"npm view failed (rc={proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    return version


def resolve_default() -> str | None:
    """Return the version a plain ``npm install`` picks here (lockfile-only dry resolution)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_package_json(work)
        proc = run_npm(
            ["install", "--package-lock-only", "--ignore-scripts", PACKAGE], work, RESOLVE_TIMEOUT
        )
        lock = work / "package-lock.json"
        if proc.returncode != 0 or not lock.exists():
            log(f"lockfile resolution failed (rc={proc.returncode}): {proc.stderr.strip()[-500:]}")
            return None
        packages = json.loads(lock.read_text()).get("packages", {})
        version = packages.get(f"node_modules/{PACKAGE}", {}).get("version")
    return str(version) if version else None


def installed_version(directory: Path) -> str | None:
    """Version of the wrapper package installed in ``directory``, if any."""
    pkg = directory / "node_modules" / PACKAGE / "package.json"
    try:
        return str(json.loads(pkg.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def find_binary(directory: Path) -> Path | None:
    """Locate the CLI: ``node_modules/.bin/claude``, else the platform package's native binary."""
    for candidate in (
        directory / "node_modules" / ".bin" / "claude",
        directory / "node_modules" / PLATFORM_PACKAGE / "claude",
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    return None


def binary_version(binary: Path) -> str | None:
    """Output of ``claude --version`` (e.g. ``2.1.197 (Claude Code)``), or None if it fails."""
    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": home,
            "TERM": "dumb",
            "LANG": "C.UTF-8",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
        try:
            proc = subprocess.run(
                [str(binary), "--version"],
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=VERSION_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log(f"{binary} --version failed: {exc}")
            return None
    if proc.returncode != 0:
        log(f"{binary} --version exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return None
    return proc.stdout.strip()


def working_binary(directory: Path, version: str | None) -> Path | None:
    """Return the cached binary if it exists, matches ``version`` (if given) and runs."""
    current = installed_version(directory)
    if current is None or (version is not None and current != version):
        return None
    binary = find_binary(directory)
    if binary is None:
        return None
    reported = binary_version(binary)
    if reported is None or not reported.startswith(current):
        return None
    return binary


def npm_install(directory: Path, spec: str) -> None:
    """``npm install <spec>`` into ``directory``; raise NpmUnavailable on failure."""
    directory.mkdir(parents=True, exist_ok=True)
    write_package_json(directory)
    log(f"npm install {spec} into {directory} (this downloads a few hundred MB) ...")
    # --prefer-offline: reuse npm's own cache for tarballs it already has.
    proc = run_npm(
        ["install", "--save-exact", "--prefer-offline", spec], directory, INSTALL_TIMEOUT
    )
    if proc.stderr.strip():
        log("npm stderr:\n" + proc.stderr.strip()[-3000:])
    if proc.returncode != 0:
        raise NpmUnavailable(f"npm install {spec} failed with exit code {proc.returncode}")


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock so concurrent runs don't install into the same dir at once."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_cache_dir(label: str) -> Path:
    """``$CCP_E2E_CACHE/<label>`` or ``~/.cache/claude-code-proxy-e2e/<label>``."""
    root = os.environ.get("CCP_E2E_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "claude-code-proxy-e2e"
    return base.expanduser() / label


def install(label: str, directory: Path) -> Path:
    """Ensure the CLI for ``label`` is installed in ``directory``; return the binary path."""
    with locked(directory):
        try:
            version = resolve_latest() if label == "latest" else resolve_default()
        except NpmUnavailable as exc:
            log(f"could not resolve version: {exc}")
            version = None
        if version is None:
            cached = working_binary(directory, None)
            if cached is not None:
                log(f"registry unavailable; using cached {installed_version(directory)}")
                return cached
            spec = f"{PACKAGE}@latest" if label == "latest" else PACKAGE
        else:
            log(f"label {label!r} resolves to {PACKAGE}@{version}")
            cached = working_binary(directory, version)
            if cached is not None:
                log(f"already installed: {version}")
                return cached
            spec = f"{PACKAGE}@{version}"
        npm_install(directory, spec)
        binary = working_binary(directory, version)
        if binary is None:
            raise RuntimeError(f"installed {spec} but no working claude binary in {directory}")
        log(f"installed {installed_version(directory)}")
        return binary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("label", choices=LABELS, help="which CLI version to install")
    parser.add_argument("--cache-dir", type=Path, help="install directory (overrides default)")
    args = parser.parse_args(argv)
    directory = (args.cache_dir or default_cache_dir(args.label)).expanduser().absolute()
    try:
        binary = install(args.label, directory)
    except NpmUnavailable as exc:
        log(f"npm could not install {PACKAGE}: {exc}")
        return EXIT_NPM_UNAVAILABLE
    except RuntimeError as exc:
        log(str(exc))
        return EXIT_BINARY_BROKEN
    print(binary)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
