"""End-to-end tests with the real Claude Code CLI."""
