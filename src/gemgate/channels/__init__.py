"""Upstreams. Each channel module states what it supports and how its wire works."""
