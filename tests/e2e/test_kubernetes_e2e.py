"""A Kubernetes node in miniature: a real containerd driven through its CRI as the kubelet drives it
(tests/support/containerd_lab.py), the plugin under a real collectd reading containerd's on-disk state.

Two pods in two namespaces, one of them with two containers.  What a user of the node sees: every
container as ``k8s-<namespace>_<pod>_<container>`` from the first pass, the pause container nowhere, each
pod as ``k8spod-<namespace>_<pod>`` with its network; names and meta from the bundles containerd wrote;
CPU compared with the processes' own /proc/<pid>/stat, the pod's interface counters with the pod's own
/proc/<pid>/net/dev; a restarted container (attempt 1, a new id) keeps its name; a stopped container
and a finished pod get their final figures (cgroup v1: on v2 a pod's own cgroup cannot hold a process).
"""

import json
import secrets
import time

import pytest

from tests.e2e.test_exit_e2e import start_collectd, finals_of
from tests.support import collectd_harness as harness
from tests.support import containerd_lab
from tests.support.kernelutil import CLK_TCK, proc_cpu_ticks

pytestmark = pytest.mark.skipif(containerd_lab.available() is not None, reason=str(containerd_lab.available()))

WEB_UID = "0b5c3f7e-1d2a-4e6b-9c8d-7a6f5e4d3c2b"
DB_UID = "5e4d3c2b-7a6f-4b8d-9c1d-2a4e6b0b5c3f"
PINGS = 20


def _busy_then_sleep(loops, then=""):
    """Burn some CPU in the shell, run ``then``, and become ``sleep`` (comm "sleep": the test waits for it)."""
    return ["/bin/sh", "-c", "i=0; while [ $i -lt %d ]; do i=$((i+1)); done; %s exec sleep 100000" % (loops, then)]


def _comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def _eth0(pid):
    """(rx bytes, tx bytes) of eth0 as the process's own /proc/<pid>/net/dev shows them."""
    with open("/proc/%d/net/dev" % pid) as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "eth0":
                v = rest.split()
                return int(v[0]), int(v[8])
    raise AssertionError("no eth0 in /proc/%d/net/dev" % pid)


def _rows(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def _latest(rows):
    """The last value of each (instance, type, type_instance)."""
    return {(r["instance"], r["type"], r["type_instance"]): r for r in rows}


def test_kubernetes_node(tmp_path):
    prefix = "ccg-test-k8s-%s" % secrets.token_hex(4)
    with containerd_lab.ContainerdLab(tmp_path, prefix) as lab:
        web = lab.run_pod("web-1", "shop", qos="burstable", uid=WEB_UID, labels={"app": "web"})
        db = lab.run_pod("db-0", "data", qos="guaranteed", uid=DB_UID)
        cd, out = start_collectd(tmp_path / "cd", "^/%s/nomatch$" % prefix,
                                 ['ContainerdState "%s"' % lab.state, "SendMeta true"],
                                 base=("CollectOnExit true", "Interval 1"))
        with cd:
            app = lab.run_container(web, "app", _busy_then_sleep(200000, "ping -q -c %d -s 1000 -i 0.1 %s;"
                                                                  % (PINGS, containerd_lab.GATEWAY)))
            side = lab.run_container(web, "sidecar", _busy_then_sleep(50000))
            dbc = lab.run_container(db, "db", _busy_then_sleep(100000))
            names = {app: "k8s-shop_web-1_app", side: "k8s-shop_web-1_sidecar", dbc: "k8s-data_db-0_db"}
            pids = {cid: lab.pid(cid) for cid in names}
            harness.wait_until(lambda: all(_comm(p) == "sleep" for p in pids.values()), 60,
                               what="every container to finish its work and sleep")
            ticks = {cid: proc_cpu_ticks(p) for cid, p in pids.items()}
            web_pid = lab.sandbox_pid(web)
            net = _eth0(pids[app])
            assert net == _eth0(web_pid)            # one namespace for the pod
            assert net[0] >= PINGS * 1000 and net[1] >= PINGS * 1000

            # Names from the first pass on: a pass that sees a container at all names it right.
            instances = lambda: {r["instance"] for r in _rows(out)}
            wanted = set(names.values()) | {"k8spod-shop_web-1", "k8spod-data_db-0"}
            harness.wait_until(lambda: wanted <= instances(), 30, what="values of %s" % sorted(wanted))
            seen = instances()
            assert seen <= wanted, "unexpected instances (the pause container?): %s" % sorted(seen - wanted)

            # CPU: each container's cgroup holds at least its process's own CPU time (the shell's
            # loop, carried over exec into sleep; ping's time is in the cgroup too); the pod holds its
            # containers (and the pause process, which does nearly nothing).
            def cpu_settled():
                last = _latest(_rows(out))
                got = {n: last.get((n, "cpu", "total")) for n in list(names.values()) + ["k8spod-shop_web-1"]}
                if not all(got.values()):
                    return None
                return {n: r["values"][0] / 100.0 for n, r in got.items()}
            time.sleep(2.5)
            cpu = harness.wait_until(cpu_settled, 20, what="cpu-total of every container and the pod")
            print("cpu-total s %s; their processes' ticks %s; pod eth0 rx/tx %s"
                  % (cpu, dict((names[c], t) for c, t in ticks.items()), net))
            for cid, name in names.items():
                assert cpu[name] >= ticks[cid] / float(CLK_TCK) - 0.01, (name, cpu[name], ticks[cid])
            web_sum = cpu["k8s-shop_web-1_app"] + cpu["k8s-shop_web-1_sidecar"]
            assert web_sum - 0.02 <= cpu["k8spod-shop_web-1"] <= web_sum + 0.2
            assert cpu["k8s-shop_web-1_app"] > 0.05        # 200000 shell loops: well above a tick

            # Network: once, under the pod, as the pod's own /proc/<pid>/net/dev counts it.
            def net_matches():
                row = _latest(_rows(out)).get(("k8spod-shop_web-1", "if_octets", "eth0"))
                return row if row and tuple(row["values"]) == _eth0(web_pid) else None
            harness.wait_until(net_matches, 20, what="the pod's if_octets-eth0 to equal /proc/<pid>/net/dev")
            assert not any(r["type"] == "if_octets" for r in _rows(out) if r["instance"].startswith("k8s-"))

            # Meta: from the bundles containerd wrote, for every value of a container.
            for cid, name in names.items():
                metas = [r["meta"] for r in _rows(out) if r["instance"] == name]
                ns, pod, container = name[len("k8s-"):].split("_")
                assert metas and all(m["runtime"] == "k8s" and m["container_id"] == cid and
                                     m["namespace"] == ns and m["pod"] == pod and m["container"] == container and
                                     m["image"] == containerd_lab.BUSYBOX_IMAGE for m in metas), (name, metas[:1])
                uid, qos = (WEB_UID, "burstable") if ns == "shop" else (DB_UID, "guaranteed")
                assert all(m["pod_uid"] == uid and m["qos"] == qos for m in metas), (name, metas[:1])
            pod_metas = [r["meta"] for r in _rows(out) if r["instance"] == "k8spod-shop_web-1"]
            assert all(m["namespace"] == "shop" and m["pod"] == "web-1" and m["pod_uid"] == WEB_UID
                       for m in pod_metas)

            # A stopped container gets its final figures; its restart (attempt 1) keeps the name.
            lab.cri.stop_container(app, timeout=2)
            final = harness.wait_until(
                lambda: (lambda f: f if ("duration", "final_cpu") in f else None)(finals_of(out, names[app])),
                30, what="final figures of %s" % names[app])
            assert final[("duration", "final_cpu")][0] >= ticks[app] / float(CLK_TCK) - 0.01
            again = lab.run_container(web, "app", _busy_then_sleep(1000), attempt=1)
            harness.wait_until(
                lambda: any(r["meta"].get("container_id") == again for r in _rows(out)), 30,
                what="values of the restarted container")
            assert {r["instance"] for r in _rows(out) if r["meta"].get("container_id") == again} == \
                {"k8s-shop_web-1_app"}

            # A finished pod (a Job's, say) gets final figures of its own: at least its container's CPU.
            lab.cri.stop_container(dbc, timeout=2)
            lab.cri.stop_pod_sandbox(db)
            final_pod = harness.wait_until(
                lambda: (lambda f: f if ("duration", "final_cpu") in f else None)(finals_of(out, "k8spod-data_db-0")),
                30, what="final figures of the pod k8spod-data_db-0")
            assert final_pod[("duration", "final_cpu")][0] >= ticks[dbc] / float(CLK_TCK) - 0.01
            assert final_pod[("memory", "max_usage")][0] > 0
            assert cd.read_failures() == []
