"""claude-code-proxy: the Anthropic Messages API on top of OpenAI-compatible providers."""

__version__ = "0.1.0"
