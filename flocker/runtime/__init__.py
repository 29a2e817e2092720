"""Container runtimes: the Docker Engine and an in-memory fake."""
