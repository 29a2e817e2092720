"""The control service: desired configuration, cluster state, REST API, AMP."""
