"""Kernel tier (root): real cgroups, real network namespaces and veths, synthetic containers."""
