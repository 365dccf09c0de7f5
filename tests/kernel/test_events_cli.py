"""``collectd-cgroups --events`` against synthetic containers on this kernel: a container there from the
start is seen, not started; one made while it runs gives one start line and, removed, one exit line whose
CPU figure is what the container used (its own /proc/<pid>/stat's utime + stime)."""

import json
import re
import secrets
import subprocess
import sys
import time

from ccg_lab.synthetic import CgroupTree, read_hierarchies
from tests.support import CHECKOUT
from tests.support.kernelutil import CLK_TCK


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_events_lines_for_a_container_started_and_removed_while_it_runs():
    prefix = "ccg-test-events-%s" % secrets.token_hex(4)
    with CgroupTree(prefix, controllers=tuple(k for k in read_hierarchies() if k != "unified")) as tree:
        tree.container("before").spawn(memory_mib=1).wait_ready()
        cli = subprocess.Popen([sys.executable, "-m", "collectd_cgroups", "--no-config", "--events", "--json",
                                "--match", "^/%s/(?P<name>[^/]+)$" % prefix, "--ignore", "^/(?!%s/)" % prefix,
                                "--metrics", "cpu", "memory", "--interval", "0.5", "--passes", "16"],
                               cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            job = tree.container("job")
            p = job.spawn(cpu_seconds=0.3, memory_mib=4)
            p.wait_ready()
            time.sleep(2.0)
            ticks = _cpu_ticks(p.pid)
            job.remove()
            out, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
    assert cli.returncode == 0, err
    found = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e["plugin_instance"]) for e in found] == [("start", "cgroup-job"), ("exit", "cgroup-job")], out
    start, end = found
    assert start["severity"] == end["severity"] == "OKAY" and start["meta"]["cgroup"] == "/%s/job" % prefix
    cpu = float(re.search(r"CPU ([\d.]+) s", end["message"]).group(1))
    assert abs(cpu - ticks / float(CLK_TCK)) <= 0.05, (end["message"], ticks)
    assert end["message"].endswith("from the last pass)")
