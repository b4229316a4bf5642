"""Thin request handlers: validate, call storage or domain, shape the response."""
