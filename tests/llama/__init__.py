"""Tests against a real llama.cpp `llama-server` (pytest marker `llama`)."""
