"""`routes` and `doctor` with a configuration file: the table, one decision, one section
per provider, and validation errors that stop both commands with exit status 2."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from claude_code_proxy.cli import main
from claude_code_proxy.config_file import CONFIG_ENV
from mock_upstream import MODELS_PATH, MockUpstream, json_response
from test_doctor import clean_env, doctor, healthy, row  # noqa: F401  (clean_env: autouse)

FILE = """
[providers.main]
base_url = "{a}"
api_key_env = "MAIN_KEY"

[providers.local]
base_url = "{b}"
api_key = "sk-local-key-1"

[routes]
opus = ["main/gpt-big", "local/gpt-small"]
sonnet = "main/gpt-middle"
haiku = "local/gpt-small"
long_context = {{ above_tokens = 50000, target = "main/gpt-big" }}

[models]
"my-alias" = "local/gpt-small"
"""


def write(
    tmp_path: Path, a: str = "http://127.0.0.1:9/v1", b: str = "http://127.0.0.1:9/v1"
) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(FILE.format(a=a, b=b))
    return path


def routes(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["routes", *args], env=env)
    return result.exit_code, result.output


def test_routes_prints_every_rule_in_order(tmp_path: Path) -> None:
    path = write(tmp_path)
    code, out = routes("--config", str(path), env={"MAIN_KEY": "sk-main-secret-1"})
    assert code == 0, out
    assert str(path) in out
    assert "sk-main-secret-1" not in out and "api_key_env = MAIN_KEY" in out
    rules = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    order = ["models", "provider", "long_context", "opus", "sonnet", "haiku", "default"]
    positions = [rules.index(rule) for rule in order]
    assert positions == sorted(positions), out
    assert "main/gpt-big, then local/gpt-small" in out


def test_routes_for_one_model(tmp_path: Path) -> None:
    env = {CONFIG_ENV: str(write(tmp_path)), "MAIN_KEY": "k"}
    assert routes("claude-sonnet-4-5", env=env) == (
        0,
        "claude-sonnet-4-5 → main/gpt-middle\n  rule: sonnet\n",
    )
    _, out = routes("claude-sonnet-4-5", "--tokens", "60000", env=env)
    assert "→ main/gpt-big" in out and "rule: long_context" in out
    _, out = routes("claude-opus-4-5", env=env)
    assert "main/gpt-big, then local/gpt-small" in out and "rule: opus" in out
    assert "rule: models:my-alias" in routes("my-alias", env=env)[1]
    assert "rule: provider" in routes("local/anything", env=env)[1]


def test_routes_without_a_file_shows_the_environments_provider() -> None:
    code, out = routes(env={"BIG_MODEL": "b", "SMALL_MODEL": "s", "OPENAI_API_KEY": "sk-x"})
    assert code == 0
    assert "the environment" in out and "upstream/b" in out and "upstream/s" in out


def test_an_invalid_file_stops_routes_and_doctor_with_file_table_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[providers.a]\nbase_url = "http://x/v1"\n[routes]\nopus = "nope/m"\n')
    code, out = routes("--config", str(path), env={})
    assert code == 2
    assert str(path) in out and "[routes]" in out and "'opus'" in out and "line 4" in out
    result = doctor({CONFIG_ENV: str(path)}, "--no-chat")
    assert result.exit_code == 2
    assert "[routes] key 'opus'" in result.output


def test_doctor_checks_each_provider_in_its_own_section(tmp_path: Path) -> None:
    with MockUpstream(healthy()) as a, MockUpstream(healthy()) as b:
        b.models = ["gpt-small"]
        path = write(tmp_path, a.base_url, b.base_url)
        result = doctor({CONFIG_ENV: str(path), "MAIN_KEY": "sk-main-secret-2"})
    out = result.output
    assert result.exit_code == 0, out
    assert "sk-main-secret-2" not in out
    main_at, local_at = out.index("provider main"), out.index("provider local")
    assert main_at < local_at
    main_part, local_part = out[main_at:local_at], out[local_at:]
    assert "reachability" in main_part and "authentication" in main_part
    row(main_part, "PASS", "model routes.opus")
    row(main_part, "PASS", "model routes.sonnet")
    assert "main/gpt-big → gpt-big answered 'pong'" in main_part
    assert "main/gpt-middle → gpt-middle answered" in main_part
    row(local_part, "PASS", "model routes.opus")  # local/gpt-small: first named by opus
    assert "local/gpt-small → gpt-small answered 'pong'" in local_part
    row(local_part, "PASS", "tool round trip")
    row(out, "INFO", "reasoning")


def test_doctor_fails_a_provider_missing_a_routed_model(tmp_path: Path) -> None:
    with MockUpstream(healthy()) as a, MockUpstream(healthy()) as b:
        b.models = ["something-else"]
        path = write(tmp_path, a.base_url, b.base_url)
        result = doctor({CONFIG_ENV: str(path), "MAIN_KEY": "k"}, "--no-chat")
    assert result.exit_code == 1
    local_part = result.output[result.output.index("provider local") :]
    line = row(local_part, "FAIL", "model routes.opus")
    assert "gpt-small" in line


def test_routes_shows_what_the_image_rule_decides_by(tmp_path: Path) -> None:
    path = tmp_path / "vision.toml"
    text = FILE.format(a="http://127.0.0.1:9/v1", b="http://127.0.0.1:9/v1")
    text = text.replace('sonnet = "main/gpt-middle"', 'sonnet = "main/gpt-4.1"')
    text = text.replace(
        "[models]", 'image = "main/gpt-4o"\n\n[vision]\n"local/gpt-small" = false\n\n[models]'
    )
    path.write_text(text)
    env = {CONFIG_ENV: str(path), "MAIN_KEY": "k"}
    code, out = routes(env=env)
    assert code == 0, out
    assert "main/gpt-4.1 reads images" in out and "local/gpt-small text only" in out
    assert "main/gpt-big" not in out.split("image input")[1]  # unknown: not listed
    _, out = routes("claude-sonnet-4-5", "--image", env=env)
    assert "rule: sonnet" in out and "→ main/gpt-4.1" in out
    _, out = routes("claude-haiku-4-5", "--image", env=env)
    assert "rule: image" in out and "→ main/gpt-4o" in out


def test_doctor_uses_the_files_context_windows_per_provider(tmp_path: Path) -> None:
    with MockUpstream(healthy()) as a, MockUpstream(healthy()) as b:
        b.models = ["gpt-small"]
        b.enqueue(
            json_response({"data": [{"id": "gpt-small", "max_model_len": 65536}]}), path=MODELS_PATH
        )
        path = write(tmp_path, a.base_url, b.base_url)
        text = path.read_text() + '\n[context_windows]\n"main/gpt-big" = 40000\n'
        path.write_text(text)
        result = doctor({CONFIG_ENV: str(path), "MAIN_KEY": "k"}, "--no-chat")
    out = result.output
    main_part, local_part = out[: out.index("provider local")], out[out.index("provider local") :]
    # main: the file's window for gpt-big (not the environment's); local: what b reports.
    assert "'gpt-big' has a 40000-token context window ([context_windows])" in main_part
    assert "'gpt-small' has a 65536-token context window" in local_part
