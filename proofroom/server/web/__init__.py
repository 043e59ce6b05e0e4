"""HTTP and websocket endpoints; the only layer that turns errors into responses."""
