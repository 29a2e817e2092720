"""flocker-ca: the cluster certificate authority and its certificates."""
