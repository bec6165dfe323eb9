"""The built-in simulated exchange: price process, matching and venue behaviour (pure, no sockets)."""
