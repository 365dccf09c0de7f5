"""End-to-end tier (root): real collectd daemons, real runtimes, the v2 guest, the benchmark."""
