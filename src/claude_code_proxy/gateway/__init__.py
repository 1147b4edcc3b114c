"""The upstream side: providers, the router that picks them, key pools, and the exchange
that walks a route's targets (docs/routing.md)."""
