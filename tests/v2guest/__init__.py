"""A pure cgroup v2 guest (qemu, TCG) that runs tests on a real v2 kernel; see README.md here."""
