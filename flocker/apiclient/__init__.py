"""Clients of the REST API v1: treq over HTTPS and an in-memory fake."""
