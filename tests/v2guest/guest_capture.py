"""Capture the world's real cgroup v2 files into the report folder (runs inside the v2 guest).

tests/support/capture.py copies both containers (and what names them) into /report/captured; the host
compares that tree with tests/fixtures/v2-guest-captured (tests/e2e/test_v2_guest.py), and
``run.py --capture-fixture`` makes it the committed fixture.  CAPTURE.json records what the
processes and the test did, for the fixture's tests to compare against.
"""

import json
import os

from tests.support.capture import capture

from tests.v2guest import guest_sources as src
from tests.v2guest.guest_world import (BOX_LIMIT, BOX_TOUCH_MIB, DIRECT_MIB, DOCKER_BURN, DOCKER_CORES,
                                 DOCKER_HIGH, DOCKER_PIDS_MAX, PODMAN_BURN, REPORT)

DEST = os.path.join(REPORT, "captured")


def test_capture_the_real_files(world):
    kid = world.docker_worker.result()["kids"][0]
    written = capture(DEST, sorted(world.containers), pids=[kid, world.steady.pid],
                      docker_root=world.docker_root)
    for path in (world.box.path, world.docker.path, world.podman.path):
        for name in ("memory.stat", "memory.events", "cpu.stat", "io.stat", "memory.current", "memory.peak",
                     "pids.current", "cpu.pressure", "memory.pressure", "io.pressure"):
            assert "/sys/fs/cgroup%s/%s" % (path, name) in written, (path, name)
    assert "/var/lib/docker/containers/%s/config.v2.json" % world.docker_id in written
    assert "/proc/%d/cgroup" % kid in written
    # what names the block devices of io.stat (the plugin reads <root>/sys/dev/block/MAJ:MIN/uevent)
    devices = set()
    for d, _ in world.containers.values():
        devices |= set((src.snapshot(d)["io.stat"] or {}))
    for dev in sorted(devices):
        with open("/sys/dev/block/%s/uevent" % dev, "rb") as f:
            data = f.read()
        os.makedirs(DEST + "/sys/dev/block/" + dev, exist_ok=True)
        with open(DEST + "/sys/dev/block/%s/uevent" % dev, "wb") as f:
            f.write(data)
    assert world.disk_dev in devices
    facts = {
        "kernel": src.uname_release(),
        "cmdline": src.kernel_cmdline(),
        "box": {"cgroup": world.box.path, "instance": "cgroup-box", "match": world.match[0][0],
                "memory_max": BOX_LIMIT, "touched_mib": BOX_TOUCH_MIB, "oom_killed_status": world.hog_status,
                "io": world.io, "direct_mib": DIRECT_MIB, "disk": world.disk, "disk_dev": world.disk_dev,
                "steady_pid": world.steady.pid, "steady_cpu_s": world.steady.cpu_used},
        "docker": {"cgroup": world.docker.path, "id": world.docker_id, "instance": "docker-%s" % world.docker_name,
                   "cpu_cores": DOCKER_CORES, "burn_s": DOCKER_BURN, "pids_max": DOCKER_PIDS_MAX,
                   "memory_high": DOCKER_HIGH, "kid_pid": kid},
        "podman": {"cgroup": world.podman.path, "id": world.podman_id, "instance": "podman-" + world.podman_id[:12],
                   "burn_s": PODMAN_BURN, "payload": "container"},
        "bare": {"cgroup": world.bare.path, "instance": "cgroup-plain", "cpu_s": world.plain.cpu_used},
    }
    with open(os.path.join(DEST, "CAPTURE.json"), "w") as f:
        json.dump(facts, f, indent=1, sort_keys=True)
        f.write("\n")
    print("captured %d files into %s" % (len(written), DEST))
