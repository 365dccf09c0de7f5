"""Events as collectd notifications (issue 18) under a real collectd, with synthetic containers of known
behaviour: collectd's ``logfile`` plugin (which writes every notification it receives) and a Python
notification callback (the second receiver, which also sees the meta data) record them.

- a container there before collectd starts is "seen": no start; one started later gives one start and,
  once removed, one exit whose CPU figure is the last cpu-total it dispatched; a churn of short
  containers gives exactly one start/exit pair each;
- a container held to a small CPU quota while it burns gives one throttling warning, then one OKAY once
  the quota is lifted, and nothing more;
- a container whose working set nears its memory limit gives one memory warning.
"""

import json
import re
import secrets
import textwrap
import time

import pytest

from ccg_lab.synthetic import CgroupTree, read_hierarchies
from tests.support import collectd_harness as harness

MiB = 1 << 20
INTERVAL = 1.0

_RECEIVER = textwrap.dedent("""
    import json
    import collectd
    NOTES, VALUES = %r, %r
    def notification(n, data=None):
        if n.plugin != "container":
            return
        with open(NOTES, "a") as f:
            f.write(json.dumps({"severity": n.severity, "instance": n.plugin_instance, "type": n.type,
                                "type_instance": n.type_instance, "message": n.message,
                                "meta": dict(getattr(n, "meta", None) or {})}) + "\\n")
    def write(vl, data=None):
        if vl.plugin == "container" and (vl.type, vl.type_instance) in (("cpu", "total"), ("duration", "final_cpu")):
            with open(VALUES, "a") as f:
                f.write(json.dumps({"instance": vl.plugin_instance, "type": vl.type, "value": vl.values[0]})
                        + "\\n")
    collectd.register_notification(notification)
    collectd.register_write(write)
""")


def _lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


@pytest.fixture
def lab(tmp_path):
    prefix = "ccg-test-notify-%s" % secrets.token_hex(4)
    tree = CgroupTree(prefix, controllers=tuple(k for k in read_hierarchies() if k != "unified"))
    tree._setup()
    notes, values = str(tmp_path / "notes.jsonl"), str(tmp_path / "values.jsonl")
    mod = tmp_path / "receiver"
    mod.mkdir()
    (mod / "ccg_receiver.py").write_text(_RECEIVER % (notes, values))
    drop = harness.dropin_text().replace(
        'Import "collectd_cgroups.plugin"',
        'ModulePath "%s"\n  Import "ccg_receiver"\n  Import "collectd_cgroups.plugin"' % mod, 1)
    lab = {"tree": tree, "prefix": prefix, "notes": notes, "values": values, "dropin": drop, "tmp": tmp_path}
    try:
        yield lab
    finally:
        tree.cleanup()


def _collectd(lab, *options):
    return harness.Collectd(lab["tmp"] / "cd", modules=[[
        'Match "^/%s/(?P<name>[^/]+)$"' % lab["prefix"], 'Ignore "^/(?!%s/)"' % lab["prefix"],
        "Interval %g" % INTERVAL,
        'Metrics "cpu" "memory" "pids"'] + list(options)], dropin=lab["dropin"])


def _cpu(lab, instance, type_="cpu"):
    """The cpu-total values (or final_cpu with type_ "duration") dispatched for ``instance``, in order."""
    return [v["value"] for v in _lines(lab["values"]) if v["instance"] == instance and v["type"] == type_]


def _of(lab, kind):
    return [n for n in _lines(lab["notes"]) if n["meta"].get("event") == kind]


def test_start_exit_and_churn(lab):
    tree = lab["tree"]
    old = tree.container("old")
    old.spawn(memory_mib=1).wait_ready()
    with _collectd(lab, 'Notify "Start" "Exit"') as cd:
        harness.wait_until(lambda: _cpu(lab, "cgroup-old"), 30, what="a first pass")
        job = tree.container("job")
        job.spawn(cpu_seconds=0.5, memory_mib=8).wait_ready()
        harness.wait_until(lambda: _of(lab, "start"), 20, what="a start notification")
        harness.wait_until(lambda: [v for v in _cpu(lab, "cgroup-job") if v >= 45], 30, what="the job's CPU seen")
        job.remove()
        harness.wait_until(lambda: _of(lab, "exit"), 20, what="an exit notification")
        churn = []
        for i in range(20):
            c = tree.container("churn%02d" % i)
            c.spawn(memory_mib=1).wait_ready()
            churn.append(c)
            time.sleep(0.3)
            if len(churn) > 4:           # about 1.5 s each: every one seen by a pass or more
                churn.pop(0).remove()
        for c in churn:
            time.sleep(1.2)
            c.remove()
        harness.wait_until(lambda: len(_of(lab, "exit")) >= 21, 30, what="every churned container's exit")
        time.sleep(2 * INTERVAL)
        log = cd.log()
        assert cd.read_failures() == []
    starts, exits = _of(lab, "start"), _of(lab, "exit")
    names = ["cgroup-job"] + ["cgroup-churn%02d" % i for i in range(20)]
    assert sorted(n["instance"] for n in starts) == sorted(names)          # old: seen, not started
    assert sorted(n["instance"] for n in exits) == sorted(names)
    (start,) = [n for n in starts if n["instance"] == "cgroup-job"]
    (end,) = [n for n in exits if n["instance"] == "cgroup-job"]
    assert start["severity"] == end["severity"] == 4 and start["type"] == end["type"] == "uptime"
    assert (start["type_instance"], end["type_instance"]) == ("started", "exited")
    assert start["meta"]["cgroup"] == "/%s/job" % lab["prefix"] and start["meta"]["runtime"] == "cgroup"
    last_cpu = _cpu(lab, "cgroup-job")[-1]
    cpu = float(re.search(r"CPU ([\d.]+) s", end["message"]).group(1))
    assert cpu == pytest.approx(last_cpu / 100.0, abs=0.006), (end["message"], last_cpu)
    assert end["message"].endswith("from the last pass)")
    # collectd's logfile plugin received them too, once each
    assert len(re.findall(r"Notification: severity = OKAY, .*plugin_instance = cgroup-job, type = uptime, "
                          r"type_instance = started", log)) == 1, log


def test_throttling_warns_once_and_okays_when_the_quota_is_lifted(lab):
    busy = lab["tree"].container("busy")
    busy.set_cpu_limit(0.1)
    busy.spawn(duty=1.0, memory_mib=1).wait_ready()
    with _collectd(lab, 'Notify "Throttled"') as cd:
        harness.wait_until(lambda: _of(lab, "throttled"), 30, what="a throttling warning")
        time.sleep(3 * INTERVAL)
        assert len(_of(lab, "throttled")) == 1
        busy.set_cpu_limit(None)
        harness.wait_until(lambda: len(_of(lab, "throttled")) >= 2, 30, what="the throttling's OKAY")
        time.sleep(3 * INTERVAL)
        assert cd.read_failures() == []
    warn, okay = _of(lab, "throttled")
    assert (warn["severity"], okay["severity"]) == (2, 4)
    assert warn["type"] == "derive" and warn["type_instance"] == "cpu_throttled_periods"
    share = int(re.search(r"\((\d+)%\)", warn["message"]).group(1))
    assert share >= 25, warn["message"]
    assert "no longer throttled" in okay["message"]


def test_memory_high_warns_once(lab):
    fat = lab["tree"].container("fat")
    fat.set_memory_limit(64 * MiB)
    fat.spawn(memory_mib=60).wait_ready()
    with _collectd(lab, 'Notify "MemoryHigh"', "MemoryHighShare 0.85") as cd:
        harness.wait_until(lambda: _of(lab, "memoryhigh"), 30, what="a memory warning")
        time.sleep(3 * INTERVAL)
        assert cd.read_failures() == []
    (warn,) = _of(lab, "memoryhigh")
    assert warn["severity"] == 2 and (warn["type"], warn["type_instance"]) == ("memory", "working_set")
    share = int(re.search(r"is (\d+)% of its limit 64.0 MiB", warn["message"]).group(1))
    assert 85 <= share <= 100, warn["message"]


def test_with_collect_on_exit_the_exit_gives_the_final_figures(lab):
    with _collectd(lab, 'Notify "Start" "Exit"', "CollectOnExit true") as cd:
        harness.wait_until(lambda: "no container found" in cd.log() or "container(s) found" in cd.log(), 30,
                           what="a first pass")
        time.sleep(2 * INTERVAL)
        job = lab["tree"].container("job")
        job.spawn(cpu_seconds=0.5, memory_mib=8, exit_after=1.0)      # exits by itself: the sentinel stays
        harness.wait_until(lambda: _of(lab, "exit"), 40, what="an exit notification")
        harness.wait_until(lambda: _cpu(lab, "cgroup-job", "duration"), 20, what="the final figures")
        time.sleep(4 * INTERVAL)
        assert cd.read_failures() == []
    (start,) = _of(lab, "start")
    (end,) = _of(lab, "exit")
    assert end["message"].endswith("from its final figures)"), end["message"]
    cpu = float(re.search(r"CPU ([\d.]+) s", end["message"]).group(1))
    (final_cpu,) = _cpu(lab, "cgroup-job", "duration")
    assert cpu == pytest.approx(final_cpu, abs=0.006) and final_cpu >= 0.45, (end["message"], final_cpu)


def test_oom_kill_one_notification_per_kill(lab):
    """A 32 MiB limit and a process that allocates past it: one FAILURE naming the container per kill (v1:
    memory.oom_control's oom_kill; v2's memory.events in the qemu guest), with the limit in its message."""
    box = lab["tree"].container("box")
    box.set_memory_limit(32 * MiB)
    box.spawn(memory_mib=1).wait_ready()        # the container lives on: its first process stays
    with _collectd(lab, 'Notify "OOM"') as cd:
        harness.wait_until(lambda: "container(s) found" in cd.log(), 30, what="a first pass")
        time.sleep(2 * INTERVAL)
        for kill in (1, 2):
            box.spawn(memory_mib=64)            # killed by the OOM killer on its way to 64 MiB
            harness.wait_until(lambda: len(_of(lab, "oom")) >= kill, 30, what="OOM notification %d" % kill)
            time.sleep(3 * INTERVAL)
            assert len(_of(lab, "oom")) == kill
        assert cd.read_failures() == []
    with open(box.dirs["memory"] + "/memory.oom_control") as f:
        kills = int(dict(line.split() for line in f.read().splitlines())["oom_kill"])
    oom = _of(lab, "oom")
    assert kills == 2 and len(oom) == 2, (kills, oom)
    assert all(n["severity"] == 1 and n["instance"] == "cgroup-box" and n["type_instance"] == "memory_oom_kill"
               and "killed 1 process since the last pass (memory limit 32.0 MiB)" in n["message"] for n in oom), oom
