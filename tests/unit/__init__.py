"""Unit tier: no root, no real cgroups, no namespaces, no daemons (``make test-unit``)."""
