"""Infrastructure: settings-independent clients for Redis and friends."""
