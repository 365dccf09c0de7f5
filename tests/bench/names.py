"""What following renames costs (issue 20), next to the main table: a Docker data root of N containers
(a config.v2.json each) and, each pass, the resolver's begin_pass and one look-up per container, as
discovery makes them; with inotify watching the containers' directories (the plugin), without it (each
state file looked at every RECHECK passes, the fallback), and with names never looked at again once found
(before renames were followed).  No cgroup, process or namespace: files under the bench's workdir."""

import json
import os
import statistics
import time


def measure(workdir, n, passes=30):
    """One line: the look-up cost per container and pass, both ways, and the difference."""
    try:
        from collectd_cgroups.root import HostRoot
        from collectd_cgroups.runtimes.resolver import RECHECK, MetadataResolver
    except ImportError:
        return "runtime names: not measured (this collectd_cgroups does not follow renames)"
    root = os.path.join(workdir, "names-root")
    ids = ["%064x" % (i + 1) for i in range(n)]
    for i, cid in enumerate(ids):
        d = os.path.join(root, "var/lib/docker/containers", cid)
        os.makedirs(d)
        with open(d + "/config.v2.json", "w") as f:
            json.dump({"ID": cid, "Name": "/bench-%d" % i, "Config": {"Image": "busybox"}}, f)

    def per_container(recheck, inotify):
        r = MetadataResolver(HostRoot(root), recheck=recheck)
        if not inotify:
            r.watch.disabled = "measured without"
        r.begin_pass()
        for cid in ids:
            r.lookup("docker", cid)         # the first pass reads them all
        times = []
        for _ in range(passes):
            t0 = time.perf_counter()
            r.begin_pass()
            for cid in ids:
                r.lookup("docker", cid)
            times.append((time.perf_counter() - t0) / n * 1e6)
        watches = len(r.watch.dirs)
        r.watch.close()
        return statistics.median(times), watches

    (watched, watches), (polled, _), (fixed, _) = (per_container(RECHECK, True), per_container(RECHECK, False),
                                                   per_container(1 << 62, False))
    return ("runtime names (%d Docker containers, %d passes), per container and pass: %.2f us with renames "
            "followed through inotify (%d watches), %.2f us without inotify (config.v2.json looked at every "
            "%d passes), %.2f us with names kept once found: %+.2f and %+.2f us"
            % (n, passes, watched, watches, polled, RECHECK, fixed, watched - fixed, polled - fixed))
