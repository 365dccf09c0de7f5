"""tests/v2guest: the pure cgroup v2 guest.  On the host only ../e2e/test_v2_guest.py runs it; the
guest_*.py files run inside the guest (run.py sets CCG_V2GUEST=1 there), never on the host."""

import os

if os.environ.get("CCG_V2GUEST") == "1":
    from tests.v2guest.guest_world import world  # noqa: F401  (the session's containers)
    collect_ignore_glob = []
else:
    collect_ignore_glob = ["guest_*.py"]
