"""Infrastructure adapters: logging, Redis and other things the service runs on."""
