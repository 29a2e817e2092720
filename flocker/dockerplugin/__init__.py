"""The Docker volume plugin that serves Flocker datasets to docker run."""
