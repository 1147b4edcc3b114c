"""Server tools the proxy runs itself, because upstream models cannot (docs/web-search.md)."""
