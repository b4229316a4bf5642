"""Infrastructure: logging, Redis and other connections to the outside."""
