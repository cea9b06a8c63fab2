"""Thin endpoints and pure-ASGI middleware."""
