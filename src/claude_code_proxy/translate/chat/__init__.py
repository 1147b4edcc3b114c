"""Anthropic Messages ⇄ OpenAI Chat Completions: request, response and stream translation."""
