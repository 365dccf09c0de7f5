"""One collection pass over each fixture tree through ``--root``, compared with the
fixture files (read by the small parsers in fixtureutil), with collectd's types.db,
and, for the captured tree, with what the captured processes measured themselves.
Then the same trees, corrupted at test time."""

import json
import os
import shutil
import socket
import time

import pytest

from collectd_cgroups.config import META_KEYS
from tests.support import fixtureutil as fu
from tests.support.fixtureutil import CLK_TCK, cli_json, flat, pressure_totals, run_cli, single

# -- what each tree holds ------------------------------------------------------------

with open(os.path.join(fu.tree("hybrid-debian12"), "CAPTURE.json")) as _f:
    CAPTURE = json.load(_f)
HYB_DOCKER = CAPTURE["containers"]["docker"]
HYB_LXC = CAPTURE["containers"]["lxc"]

V2_DOCKER = "67490dfe16f03ced6edb0d7f2c56b1726ec290fd7f18eebfb6054fa446663165"
V2_PODMAN = "6f8ee1dad3bff79b38de7221cae2f130b2ad0d5a5a493313cff6247361303835"
V2_CONTAINERD = "ce06136d2ad72ac28e31133fab08a73c654b832ee8e05375b1143a4ed4c580c5"
V2_PAUSE = "afe4751b95d75330b537d9618b4577bcba76c3925eb81f618dd812406a24ded2"
V2_CRIO = "07a71bc32af0bfc5fbec3aeeea27655382e6395fd36e0a5faac647fadf0e96b4"
V2_POD = ("/kubepods.slice/kubepods-burstable.slice/"
          "kubepods-burstable-pod6f1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice")
V2_POD2 = ("/kubepods.slice/kubepods-besteffort.slice/"
           "kubepods-besteffort-pod0a9b8c7d_6e5f_4d3c_b2a1_0f9e8d7c6b5a.slice")
# CRI-O's k8s_<container>_<pod>_<namespace>_<uid>_<attempt> name (containers.json) gives the instance.
CRIO_INSTANCE = "k8s-default_nginx-7c5ddbdf54-x8f9q_nginx"

SD_DOCKER = "677f799d6df180fd6fd19a37f865aee6d497eeb6e45446d8a7f601db776eefca"
SD_APP = "09added69da715745603c250084ed86be5383c5e1e60693c41e48649628153f3"
SD_PAUSE = "d1a6f2f49007a61da431c8f9c6cb8f788f45bf2dc52379b16ac4ff4b6467617f"
SD_GUARANTEED = "7112eeaa701f115309e250be50d96a15b974ff88f0cf875184001206df68d351"
SD_POD = "/kubepods/burstable/podb7c3e5d2-1f4a-4c8e-9d6b-2a7f0e3c5b19"
SD_POD2 = "/kubepods/pod3e2d1c0b-9a8f-4e7d-a6c5-b4a3928170ff"

# The block I/O trees (README.md in each): containers with no figure at all are not reported.
CFQ_DB = "8d70035e4fb535956fcf28e3ead0c67e17af46af0fbcfc6dcd0aa3a9bdfdf240"
THR_WEB = "92adc27908a55fead388a11f6be7e6796f0ae4d5986054ba899545c87c026fd6"
THR_CI = "c045176731ae4953c30237600789028f7efb4abc12a6e31b32d07f08f3498f86"
with open(os.path.join(fu.tree("blkio-v1-bfq"), "CAPTURE.json")) as _f:
    BFQ_CAPTURE = json.load(_f)
BFQ_STORE = BFQ_CAPTURE["containers"]["store"]["cgroup"]
BFQ_BOX = BFQ_CAPTURE["containers"]["box"]["cgroup"]
V2IO_PG = "b90947bf72fa04629a485d8b324275a670197b0b09aae99b0e5d96098cdc9e4c"
V2IO_CACHE = "f2d1c5b9a3e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2"

# plugin_instance -> (runtime, container_id, cgroup path)
EXPECTED = {
    "hybrid-debian12": {
        "docker-web1": ("docker", HYB_DOCKER["id"], HYB_DOCKER["cgroup"]),
        "lxc-web": ("lxc", "web", "/lxc.payload.web"),
    },
    "v2-pure": {
        "docker-api": ("docker", V2_DOCKER, "/system.slice/docker-%s.scope" % V2_DOCKER),
        "podman-db": ("podman", V2_PODMAN, "/machine.slice/libpod-%s.scope" % V2_PODMAN),
        "k8s-" + V2_CONTAINERD[:12]: ("k8s", V2_CONTAINERD, V2_POD + "/cri-containerd-%s.scope" % V2_CONTAINERD),
        "k8s-" + V2_PAUSE[:12]: ("k8s", V2_PAUSE, V2_POD + "/cri-containerd-%s.scope" % V2_PAUSE),
        CRIO_INSTANCE: ("k8s", V2_CRIO, V2_POD2 + "/crio-%s.scope" % V2_CRIO),
        "nspawn-my-box": ("nspawn", "my-box", "/machine.slice/machine-my\\x2dbox.scope"),
    },
    "v1-legacy-single": {
        "lxc-pumpkin": ("lxc", "pumpkin", "/lxc/pumpkin"),
        "lxc-db-01": ("lxc", "db-01", "/lxc/db-01"),
    },
    "v1-systemd-driver": {
        "docker-registry": ("docker", SD_DOCKER, "/system.slice/docker-%s.scope" % SD_DOCKER),
        "k8s-" + SD_APP[:12]: ("k8s", SD_APP, SD_POD + "/" + SD_APP),
        "k8s-" + SD_PAUSE[:12]: ("k8s", SD_PAUSE, SD_POD + "/" + SD_PAUSE),
        "k8s-" + SD_GUARANTEED[:12]: ("k8s", SD_GUARANTEED, SD_POD2 + "/" + SD_GUARANTEED),
    },
    "blkio-v1-cfq": {
        "docker-db": ("docker", CFQ_DB, "/docker/" + CFQ_DB),
        "lxc-web": ("lxc", "web", "/lxc/web"),
    },
    "blkio-v1-throttle": {
        "docker-web": ("docker", THR_WEB, "/docker/" + THR_WEB),
        "docker-ci": ("docker", THR_CI, "/docker/" + THR_CI),
    },
    "blkio-v1-bfq": {
        "docker-store": ("docker", BFQ_STORE.rsplit("/", 1)[1], BFQ_STORE),
        "lxc-box": ("lxc", "box", BFQ_BOX),
    },
    "blkio-v2-iostat": {
        "docker-pg": ("docker", V2IO_PG, "/system.slice/docker-%s.scope" % V2IO_PG),
        "podman-cache": ("podman", V2IO_CACHE, "/machine.slice/libpod-%s.scope" % V2IO_CACHE),
    },
}


def dirs(tree, cgroup):
    """Directory (relative to the tree) holding each controller's files of a cgroup."""
    if tree == "hybrid-debian12":
        base = "sys/fs/cgroup/"
        return {c: base + c + cgroup for c in ("cpu", "cpuacct", "memory", "pids", "blkio")} | {
            "unified": base + "unified" + cgroup}
    if tree in ("v2-pure", "blkio-v2-iostat"):
        return {c: "sys/fs/cgroup" + cgroup for c in ("cpu", "cpuacct", "memory", "pids", "blkio", "unified")}
    if tree == "v1-legacy-single":
        return {c: "cgroup" + cgroup for c in ("cpu", "cpuacct", "memory", "pids", "blkio")}
    base = "sys/fs/cgroup/"
    if tree.startswith("blkio-"):
        return {"blkio": base + "blkio" + cgroup}
    return {"cpu": base + "cpu,cpuacct" + cgroup, "cpuacct": base + "cpu,cpuacct" + cgroup,
            "memory": base + "memory" + cgroup, "pids": base + "pids" + cgroup, "blkio": base + "blkio" + cgroup}


def blkio_top(tree):
    """The top directory of the tree's blkio v1 hierarchy."""
    return "cgroup" if tree == "v1-legacy-single" else "sys/fs/cgroup/blkio"


# Field classes of memory.stat, from the kernel's documentation (cgroup-v1/memory.rst
# 5.2 and cgroup-v2.rst "memory.stat": "All memory amounts are in bytes"); every field
# the fixtures hold must be in one of these, so that the test knows what it expects.
V1_BYTES = {"cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback", "swap",
            "swapcached", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable"}
V1_EVENTS = {"pgpgin", "pgpgout", "pgfault", "pgmajfault", "workingset_refault_anon",
             "workingset_refault_file"}
V2_BYTES = {"anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables", "percpu", "sock",
            "vmalloc", "shmem", "zswap", "zswapped", "file_mapped", "file_dirty", "file_writeback",
            "swapcached", "anon_thp", "file_thp", "shmem_thp", "inactive_anon", "active_anon",
            "inactive_file", "active_file", "unevictable", "slab_reclaimable", "slab_unreclaimable",
            "slab", "hugetlb"}
V2_EVENTS = {"workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
             "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
             "workingset_nodereclaim", "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged",
             "pgdemote_proactive", "pgpromote_success", "pgscan", "pgsteal", "pswpin", "pswpout",
             "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive",
             "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgsteal_proactive",
             "pgfault", "pgmajfault", "pgrefill", "pgactivate", "pgdeactivate", "pglazyfree",
             "pglazyfreed", "swpin_zero", "swpout_zero", "zswpin", "zswpout", "zswpwb",
             "thp_fault_alloc", "thp_collapse_alloc", "thp_swpout", "thp_swpout_fallback",
             "numa_pages_migrated", "numa_pte_updates", "numa_hint_faults"}


def expected_v1(root, d, unified=None):
    """Every identifier and value one v1 container should produce, from its files."""
    out = {}
    ticks = flat(root, d["cpuacct"] + "/cpuacct.stat")
    out[("cpu", "user")] = ticks["user"] * 100 // CLK_TCK
    out[("cpu", "system")] = ticks["system"] * 100 // CLK_TCK
    out[("cpu", "total")] = int(single(root, d["cpuacct"] + "/cpuacct.usage")) // 10 ** 7
    cpu = flat(root, d["cpu"] + "/cpu.stat")
    out[("derive", "cpu_periods")] = cpu["nr_periods"]
    out[("derive", "cpu_throttled_periods")] = cpu["nr_throttled"]
    out[("total_time_in_ms", "cpu_throttled")] = cpu["throttled_time"] // 10 ** 6
    ms = flat(root, d["memory"] + "/memory.stat")
    usage = int(single(root, d["memory"] + "/memory.usage_in_bytes"))
    out[("memory", "usage")] = usage
    out[("memory", "working_set")] = usage - ms["total_inactive_file"]
    out[("memory", "max_usage")] = int(single(root, d["memory"] + "/memory.max_usage_in_bytes"))
    out[("derive", "memory_failcnt")] = int(single(root, d["memory"] + "/memory.failcnt"))
    if os.path.exists(os.path.join(root, d["memory"].lstrip("/"), "memory.oom_control")):
        control = flat(root, d["memory"] + "/memory.oom_control")
        if "oom_kill" in control:           # Linux 4.13+
            out[("derive", "memory_oom_kill")] = control["oom_kill"]
    for key, instance in (("hierarchical_memory_limit", "limit"), ("hierarchical_memsw_limit", "memsw_limit")):
        if ms[key] != fu.NO_LIMIT_V1:
            out[("memory", instance)] = ms[key]
    for key, value in ms.items():
        if key.startswith("hierarchical_"):
            continue
        if key.startswith("total_"):
            key = key[len("total_"):]
        elif "total_" + key in ms:
            continue                                   # the hierarchical figure is used
        assert key in V1_BYTES | V1_EVENTS, "fixture field unknown to this test: " + key
        out[("memory" if key in V1_BYTES else "vmpage_action", key)] = value
    out.update(expected_pids(root, d))
    if unified:
        out.update(expected_pressure(root, unified))
    return out


def expected_blkio(tree, root, d):
    if "unified" in d and d["blkio"] == d["unified"]:
        return fu.expected_blkio_v2(root, d["blkio"])
    return fu.expected_blkio_v1(root, d["blkio"], blkio_top(tree))


def expected_v2(root, d):
    out = {}
    cpu = flat(root, d["cpu"] + "/cpu.stat")
    out[("cpu", "user")] = cpu["user_usec"] // 10 ** 4
    out[("cpu", "system")] = cpu["system_usec"] // 10 ** 4
    out[("cpu", "total")] = cpu["usage_usec"] // 10 ** 4
    out[("derive", "cpu_periods")] = cpu["nr_periods"]
    out[("derive", "cpu_throttled_periods")] = cpu["nr_throttled"]
    out[("total_time_in_ms", "cpu_throttled")] = cpu["throttled_usec"] // 1000
    m = d["memory"]
    ms = flat(root, m + "/memory.stat")
    current = int(single(root, m + "/memory.current"))
    out[("memory", "usage")] = current
    out[("memory", "working_set")] = current - ms["inactive_file"]
    out[("memory", "max_usage")] = int(single(root, m + "/memory.peak"))
    out[("memory", "swap_usage")] = int(single(root, m + "/memory.swap.current"))
    for name, instance in (("memory.max", "limit"), ("memory.high", "high"), ("memory.swap.max", "swap_limit")):
        value = single(root, m + "/" + name)
        if value != "max":
            out[("memory", instance)] = int(value)
    for key, value in flat(root, m + "/memory.events").items():
        out[("derive", "memory_" + key)] = value
    for key, value in ms.items():
        assert key in V2_BYTES | V2_EVENTS, "fixture field unknown to this test: " + key
        out[("memory" if key in V2_BYTES else "vmpage_action", key)] = value
    out.update(expected_pids(root, d))
    out.update(expected_pressure(root, d["unified"]))
    return out


def expected_pids(root, d):
    out = {("count", "pids"): int(single(root, d["pids"] + "/pids.current"))}
    limit = single(root, d["pids"] + "/pids.max")
    if limit != "max":
        out[("count", "pids_limit")] = int(limit)
    return out


def expected_pressure(root, directory):
    out = {}
    for resource in ("cpu", "memory", "io"):
        for kind, usec in pressure_totals(root, directory + "/%s.pressure" % resource).items():
            out[("total_time_in_ms", "pressure_%s_%s" % (resource, kind))] = usec // 1000
    return out


def expected_values(tree, instance):
    root = fu.tree(tree)
    cgroup = EXPECTED[tree][instance][2]
    d = dirs(tree, cgroup)
    if tree.startswith("blkio-"):
        return expected_blkio(tree, root, d)          # these trees hold block I/O files only
    if tree == "v2-pure":
        return {**expected_v2(root, d), **expected_blkio(tree, root, d)}
    return {**expected_v1(root, d, d.get("unified")), **expected_blkio(tree, root, d)}


@pytest.fixture(scope="module")
def passes():
    """One --json pass per tree (trees are read-only data, so one pass serves all)."""
    return {t: cli_json(fu.tree(t)) for t in fu.TREES}


# -- the containers found -------------------------------------------------------------

@pytest.mark.parametrize("tree", fu.TREES)
def test_exact_set_of_containers(passes, tree):
    entries, _ = passes[tree]
    found = {}
    for e in entries:
        meta = e["meta"]
        found.setdefault(e["plugin_instance"], set()).add(
            (meta["runtime"], meta["container_id"], meta["cgroup"]))
    assert {k: v.pop() for k, v in found.items() if len(v) == 1} == EXPECTED[tree]
    assert all(len(v) == 0 for v in found.values())


@pytest.mark.parametrize("tree, instance", [(t, i) for t in fu.TREES for i in sorted(EXPECTED[t])])
def test_values_match_the_files(passes, tree, instance):
    got = fu.values(passes[tree][0])[instance]
    expected = expected_values(tree, instance)
    assert got == expected


@pytest.mark.parametrize("tree", fu.TREES)
def test_json_format(passes, tree):
    entries, _ = passes[tree]
    assert entries
    now = time.time()
    for e in entries:
        assert set(e) == {"values", "dstypes", "dsnames", "time", "interval", "host", "plugin",
                          "plugin_instance", "type", "type_instance", "meta"}
        assert e["plugin"] == "container"
        assert e["host"] == socket.gethostname()
        assert e["interval"] == 10.0
        assert isinstance(e["time"], float) and abs(e["time"] - now) < 300
        assert len(e["values"]) == len(e["dstypes"]) == len(e["dsnames"]) in (1, 2)
        assert {"runtime", "container_id", "cgroup"} <= set(e["meta"]) <= set(META_KEYS)
        assert all(isinstance(v, str) and v for v in e["meta"].values())


# What each container's runtime state (or, for Kubernetes, its cgroup path) tells beyond
# runtime, id and cgroup: the same on every value of the container.
EXTRA_META = {
    "v2-pure": {
        "docker-api": {"image": "nginx:1.25"},
        "podman-db": {},
        "nspawn-my-box": {},
        "k8s-" + V2_CONTAINERD[:12]: {"qos": "burstable"},
        "k8s-" + V2_PAUSE[:12]: {"qos": "burstable"},
        CRIO_INSTANCE: {"namespace": "default", "pod": "nginx-7c5ddbdf54-x8f9q", "container": "nginx",
                        "pod_uid": "0a9b8c7d-6e5f-4d3c-b2a1-0f9e8d7c6b5a", "qos": "besteffort"},
    },
    "v1-systemd-driver": {
        "docker-registry": {"image": "registry:2"},
        "k8s-" + SD_APP[:12]: {"qos": "burstable"},
        "k8s-" + SD_PAUSE[:12]: {"qos": "burstable"},
        "k8s-" + SD_GUARANTEED[:12]: {"qos": "guaranteed"},
    },
}


@pytest.mark.parametrize("tree", sorted(EXTRA_META))
def test_metadata_from_runtime_state(passes, tree):
    entries, _ = passes[tree]
    found = {}
    for e in entries:
        extra = {k: v for k, v in e["meta"].items() if k not in ("runtime", "container_id", "cgroup")}
        found.setdefault(e["plugin_instance"], []).append(extra)
    assert set(found) == set(EXTRA_META[tree])
    for instance, metas in found.items():
        assert all(m == EXTRA_META[tree][instance] for m in metas), instance


def test_json_interval_option():
    entries, _ = cli_json(fu.tree("v1-legacy-single"), "--interval", "30")
    assert {e["interval"] for e in entries} == {30.0}


@pytest.mark.parametrize("tree", fu.TREES)
def test_every_type_is_in_collectds_types_db(passes, tree):
    db = fu.types_db()
    entries, _ = passes[tree]
    assert {e["type"] for e in entries} <= {"cpu", "derive", "total_time_in_ms", "vmpage_action",
                                            "memory", "count", "disk_octets", "disk_ops", "disk_time",
                                            "total_bytes", "total_operations", "queue_length"}
    for e in entries:
        sources = db[e["type"]]
        assert e["dsnames"] == [s[0] for s in sources]
        assert e["dstypes"] == [s[1].lower() for s in sources]
        for value, (_, ds_type, lo, hi) in zip(e["values"], sources):
            assert type(value) is int, (e["type"], e["type_instance"], value)
            assert lo is None or value >= lo, e
            assert hi is None or value <= hi, e


@pytest.mark.parametrize("tree", fu.TREES)
def test_identifiers_are_valid_and_unique(passes, tree):
    entries, _ = passes[tree]
    seen = set()
    for e in entries:
        for part in (e["plugin_instance"], e["type_instance"]):
            assert fu.VALID_NAME.match(part), part
        key = (e["plugin_instance"], e["type"], e["type_instance"])
        assert key not in seen
        seen.add(key)


@pytest.mark.parametrize("tree", fu.TREES)
def test_table_output(tree):
    rc, out, err = run_cli(["--root", fu.tree(tree)])
    assert rc == 0
    rows = out.splitlines()
    assert rows[0].startswith("CONTAINER")
    assert sorted(r.split()[0] for r in rows[1:]) == sorted(EXPECTED[tree])


@pytest.mark.parametrize("tree, mode", [("hybrid-debian12", "hybrid"), ("v2-pure", "v2"),
                                        ("v1-legacy-single", "v1"), ("v1-systemd-driver", "v1")])
def test_layout_output(tree, mode):
    rc, out, _ = run_cli(["--root", fu.tree(tree), "--layout"])
    assert rc == 0
    assert out.splitlines()[0] == "cgroup layout: " + mode


# -- hybrid-debian12: the kernel's figures against what the processes measured ----------

def test_hybrid_cpu_against_the_process_own_measurement(passes):
    v = fu.values(passes["hybrid-debian12"][0])["docker-web1"]
    # all the CPU the process spent inside the cgroup, and no more than its whole life's
    lo = HYB_DOCKER["in_cgroup_cpu_ns"] // 10 ** 7
    hi = HYB_DOCKER["process_cpu_ns"] // 10 ** 7 + 1
    assert lo <= v[("cpu", "total")] <= hi
    # tick-sampled user+system agrees with the ns counter within a few ticks
    assert abs(v[("cpu", "user")] + v[("cpu", "system")] - v[("cpu", "total")]) <= 5


def test_hybrid_throttling_under_the_quota(passes):
    v = fu.values(passes["hybrid-debian12"][0])["docker-web1"]
    # 0.6 s of CPU under a 50% quota of 100 ms periods cannot run unthrottled
    assert HYB_DOCKER["cpu_cfs_quota_us"] * 2 == HYB_DOCKER["cpu_cfs_period_us"]
    assert v[("derive", "cpu_throttled_periods")] > 0
    assert v[("derive", "cpu_periods")] >= HYB_DOCKER["in_cgroup_cpu_ns"] // (50 * 10 ** 6)
    assert v[("total_time_in_ms", "cpu_throttled")] > 0
    # the unthrottled LXC container
    lxc = fu.values(passes["hybrid-debian12"][0])["lxc-web"]
    assert lxc[("derive", "cpu_throttled_periods")] == 0


def test_hybrid_memory_against_what_was_touched(passes):
    v = fu.values(passes["hybrid-debian12"][0])["docker-web1"]
    touched, cached = HYB_DOCKER["touched_bytes"], HYB_DOCKER["file_bytes"]
    assert v[("memory", "rss")] >= touched                     # total_rss: anonymous memory
    assert v[("memory", "cache")] >= cached                    # the file written and read back
    assert v[("memory", "usage")] >= touched + cached
    assert v[("memory", "max_usage")] >= v[("memory", "usage")]
    assert v[("memory", "working_set")] == v[("memory", "usage")] - v[("memory", "inactive_file")]
    assert v[("memory", "working_set")] < v[("memory", "usage")]
    assert ("memory", "limit") not in v and ("memory", "memsw_limit") not in v   # unlimited
    assert v[("count", "pids")] == HYB_DOCKER["tasks"]
    assert ("count", "pids_limit") not in v                                     # pids.max "max"
    lxc = fu.values(passes["hybrid-debian12"][0])["lxc-web"]
    assert lxc[("memory", "limit")] == HYB_LXC["memory_limit_in_bytes"]
    assert lxc[("count", "pids_limit")] == HYB_LXC["pids_max"]
    assert lxc[("memory", "rss")] >= HYB_LXC["touched_bytes"]


def test_hybrid_pressure_comes_from_the_cgroup2_mount(passes):
    v = fu.values(passes["hybrid-debian12"][0])["docker-web1"]
    ids = {ti for t, ti in v if t == "total_time_in_ms" and ti.startswith("pressure_")}
    assert ids == {"pressure_%s_%s" % (r, k) for r in ("cpu", "memory", "io") for k in ("some", "full")}


def test_hybrid_per_cpu():
    entries, _ = cli_json(fu.tree("hybrid-debian12"), "--per-cpu")
    v = fu.values(entries)["docker-web1"]
    per_cpu = {ti: x for (t, ti), x in v.items() if t == "cpu" and ti.startswith("cpu")}
    assert sorted(per_cpu) == ["cpu%d" % n for n in range(CAPTURE["cpus"])]
    ns = [int(x) for x in fu.read(fu.tree("hybrid-debian12"),
                                  dirs("hybrid-debian12", HYB_DOCKER["cgroup"])["cpuacct"]
                                  + "/cpuacct.usage_percpu").split()]
    assert [per_cpu["cpu%d" % n] for n in range(len(ns))] == [x // 10 ** 7 for x in ns]
    # the per-CPU counters add up to the total, give or take a hundredth per CPU
    assert abs(sum(per_cpu.values()) - v[("cpu", "total")]) <= len(ns)


def test_hybrid_pid_selects_its_container():
    pid = HYB_DOCKER["pid"]
    entries, _ = cli_json(fu.tree("hybrid-debian12"), "--pid", str(pid))
    assert {e["plugin_instance"] for e in entries} == {"docker-web1"}


def test_pid_outside_any_container(tmp_path):
    root = fu.copy_tree("hybrid-debian12", tmp_path)
    os.makedirs(os.path.join(root, "proc", "4242"))
    with open(os.path.join(root, "proc", "4242", "cgroup"), "w") as f:
        f.write("4:memory:/user.slice\n0::/user.slice\n")
    rc, out, err = run_cli(["--root", root, "--pid", "4242"])
    assert rc == 1 and "in no container cgroup" in err
    rc, out, err = run_cli(["--root", root, "--pid", "4343"])
    assert rc == 1 and "cannot read the cgroups of PID 4343" in err


# -- v2-pure ------------------------------------------------------------------------

def test_v2_names_limits_and_no_limit(passes):
    v = fu.values(passes["v2-pure"][0])
    assert v["docker-api"][("memory", "limit")] == 536870912
    assert v["docker-api"][("memory", "swap_limit")] == 536870912
    assert v["k8s-" + V2_CONTAINERD[:12]][("memory", "limit")] == 268435456
    assert v["podman-db"][("memory", "high")] == 805306368         # a number: dispatched
    for inst, values in v.items():
        if inst != "podman-db":
            assert ("memory", "high") not in values                # "max": not dispatched
        if inst not in ("docker-api", "k8s-" + V2_CONTAINERD[:12]):
            assert ("memory", "limit") not in values               # memory.max "max"
    assert v["podman-db"][("count", "pids_limit")] == 2048
    assert v["nspawn-my-box"][("count", "pids_limit")] == 16384
    assert ("count", "pids_limit") not in v["docker-api"]
    assert v["k8s-" + V2_CONTAINERD[:12]][("derive", "memory_oom_kill")] == 1


def test_v2_container_values_come_from_the_scope_not_its_children(passes):
    # podman+crun puts the payload in libpod-<id>.scope/container; v2 figures are
    # hierarchical, so the scope's own files are the container's.
    v = fu.values(passes["v2-pure"][0])["podman-db"]
    root = fu.tree("v2-pure")
    scope = "sys/fs/cgroup/machine.slice/libpod-%s.scope" % V2_PODMAN
    assert v[("memory", "usage")] == int(single(root, scope + "/memory.current"))
    assert v[("memory", "usage")] != int(single(root, scope + "/container/memory.current"))


def test_v2_every_memory_stat_field_is_dispatched():
    entries, err = cli_json(fu.tree("v2-pure"))
    v = fu.values(entries)["docker-api"]
    fields = flat(fu.tree("v2-pure"), "sys/fs/cgroup/system.slice/docker-%s.scope/memory.stat" % V2_DOCKER)
    for key, value in fields.items():
        kind = "memory" if key in V2_BYTES else "vmpage_action"
        assert v.get((kind, key)) == value, key
    assert "unknown memory.stat field" not in err


# -- v1-legacy-single -------------------------------------------------------------

def test_v1_uses_the_hierarchical_total_view(passes):
    v = fu.values(passes["v1-legacy-single"][0])["lxc-pumpkin"]
    ms = flat(fu.tree("v1-legacy-single"), "cgroup/lxc/pumpkin/memory.stat")
    assert ms["rss"] != ms["total_rss"]          # the processes sit in sub-cgroups
    assert v[("memory", "rss")] == ms["total_rss"]
    assert v[("memory", "cache")] == ms["total_cache"]
    assert v[("vmpage_action", "pgfault")] == ms["total_pgfault"]
    assert v[("memory", "working_set")] == v[("memory", "usage")] - ms["total_inactive_file"]
    assert v[("memory", "limit")] == 1073741824 and v[("memory", "memsw_limit")] == 2147483648
    assert v[("derive", "memory_failcnt")] == 3
    db = fu.values(passes["v1-legacy-single"][0])["lxc-db-01"]
    assert ("memory", "limit") not in db and ("memory", "memsw_limit") not in db
    assert db[("count", "pids_limit")] == 200


def test_v1_old_kernel_fields_are_not_invented(passes):
    for inst, v in fu.values(passes["v1-legacy-single"][0]).items():
        for absent in ("shmem", "swapcached"):
            assert ("memory", absent) not in v
        assert not any(ti.startswith("workingset_") for _, ti in v)
        assert not any(ti.startswith("pressure_") for _, ti in v)     # no cgroup2 mount


# -- v1-systemd-driver -------------------------------------------------------------

def test_v1_comounted_cpu_cpuacct_and_user_hz(passes):
    v = fu.values(passes["v1-systemd-driver"][0])
    root = fu.tree("v1-systemd-driver")
    app = v["k8s-" + SD_APP[:12]]
    d = "sys/fs/cgroup/cpu,cpuacct" + SD_POD + "/" + SD_APP
    ticks = flat(root, d + "/cpuacct.stat")
    # USER_HZ ticks -> hundredths of a second by the machine's CLK_TCK
    assert app[("cpu", "user")] == ticks["user"] * 100 // CLK_TCK
    # the ns counter and the tick counters describe the same CPU time
    for inst in v:
        assert abs(v[inst][("cpu", "user")] + v[inst][("cpu", "system")] - v[inst][("cpu", "total")]) <= 2
    # throttling from cpu.stat of the same co-mounted hierarchy, ns -> ms
    assert app[("total_time_in_ms", "cpu_throttled")] == flat(root, d + "/cpu.stat")["throttled_time"] // 10 ** 6


def test_v1_kubernetes_limits_are_the_effective_ones(passes):
    v = fu.values(passes["v1-systemd-driver"][0])
    assert v["k8s-" + SD_APP[:12]][("memory", "limit")] == 536870912
    assert v["k8s-" + SD_APP[:12]][("memory", "memsw_limit")] == 536870912
    assert v["k8s-" + SD_PAUSE[:12]][("memory", "limit")] == 536870912     # the pod's limit
    assert v["k8s-" + SD_GUARANTEED[:12]][("memory", "limit")] == 1073741824
    assert v["k8s-" + SD_GUARANTEED[:12]][("count", "pids_limit")] == 1024
    assert ("memory", "limit") not in v["docker-registry"]
    assert v["k8s-" + SD_APP[:12]][("derive", "memory_failcnt")] == 1201


# -- the fixture trees themselves ----------------------------------------------------

@pytest.mark.parametrize("tree", fu.TREES)
def test_fixture_tree_is_documented_and_survives_git(tree):
    root = fu.tree(tree)
    assert os.path.isfile(os.path.join(root, "README.md"))
    for directory, subdirs, files in os.walk(root):
        # git keeps no empty directory: a tree that lost one would test something else
        assert subdirs or files, directory


# -- bad input, made at test time from copies of the trees ----------------------------

def container_dir(root, tree, instance, controller):
    return os.path.join(root, dirs(tree, EXPECTED[tree][instance][2])[controller])


def edit(path, fn):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(fn(text))


def others_unchanged(passes, tree, got, except_instance):
    pristine = fu.values(passes[tree][0])
    for inst in EXPECTED[tree]:
        if inst != except_instance:
            assert got[inst] == pristine[inst], inst


@pytest.mark.parametrize("tree, instance, lines", [
    ("v2-pure", "docker-api", ("pgmajfault", "file_mapped")),
    ("hybrid-debian12", "docker-web1", ("total_pgmajfault", "total_mapped_file")),
    ("v1-legacy-single", "lxc-db-01", ("total_pgmajfault", "total_mapped_file")),
])
def test_malformed_memory_stat_lines_are_skipped(passes, tmp_path, tree, instance, lines):
    root = fu.copy_tree(tree, tmp_path)
    path = os.path.join(container_dir(root, tree, instance, "memory"), "memory.stat")

    def corrupt(text):
        out = []
        for line in text.splitlines():
            key = line.split(" ")[0]
            if key == lines[0]:
                line = key                          # value missing
            elif key == lines[1]:
                line = key + " 12x4"                # not a number
            elif key == lines[1].replace("total_", ""):
                continue                            # no local fallback either
            elif key == lines[0].replace("total_", ""):
                continue
            out.append(line)
        return "\n".join(out) + "\n" + lines[0][:5]  # and a truncated last line
    edit(path, corrupt)
    entries, err = cli_json(root)
    got = fu.values(entries)
    v = got[instance]
    short = [l.replace("total_", "") for l in lines]
    assert ("vmpage_action", short[0]) not in v
    assert ("memory", short[1]) not in v
    expected = dict(fu.values(passes[tree][0])[instance])
    del expected[("vmpage_action", short[0])]
    del expected[("memory", short[1])]
    assert v == expected                            # every other figure kept
    assert "malformed line %r" % lines[0].encode() in err
    others_unchanged(passes, tree, got, instance)


@pytest.mark.parametrize("tree, instance", [("v2-pure", "podman-db"), ("v1-systemd-driver", "docker-registry")])
def test_unknown_memory_stat_field(passes, tmp_path, tree, instance):
    root = fu.copy_tree(tree, tmp_path)
    path = os.path.join(container_dir(root, tree, instance, "memory"), "memory.stat")
    edit(path, lambda t: t.replace("\n", "\nfrobnicate_bytes 4096\n", 1))
    entries, err = cli_json(root)
    got = fu.values(entries)
    assert got[instance] == fu.values(passes[tree][0])[instance]
    assert "unknown memory.stat field 'frobnicate_bytes'" in err
    others_unchanged(passes, tree, got, instance)


def from_memory_stat_v2(key):
    """Identifiers that need memory.stat on v2: its fields and working_set."""
    return key[0] == "vmpage_action" or key == ("memory", "working_set") or (
        key[0] == "memory" and key[1] in V2_BYTES)


def from_memory_stat_v1(key):
    """On v1 the (hierarchical) limits come with memory.stat too."""
    return key in (("memory", "limit"), ("memory", "memsw_limit")) or key == ("memory", "working_set") \
        or key[0] == "vmpage_action" or (key[0] == "memory" and key[1] in V1_BYTES)


@pytest.mark.parametrize("tree, instance, controller, name, lost", [
    ("v2-pure", "docker-api", "memory", "memory.stat", from_memory_stat_v2),
    ("v1-legacy-single", "lxc-pumpkin", "memory", "memory.stat", from_memory_stat_v1),
    ("hybrid-debian12", "docker-web1", "memory", "memory.stat", from_memory_stat_v1),
    ("hybrid-debian12", "lxc-web", "cpuacct", "cpuacct.stat",
     lambda key: key in (("cpu", "user"), ("cpu", "system"))),
    ("v1-legacy-single", "lxc-pumpkin", "pids", "pids.current", lambda key: key == ("count", "pids")),
])
def test_file_replaced_by_a_directory(passes, tmp_path, tree, instance, controller, name, lost):
    root = fu.copy_tree(tree, tmp_path)
    path = os.path.join(container_dir(root, tree, instance, controller), name)
    os.unlink(path)
    os.mkdir(path)
    with open(os.path.join(path, "cgroup.procs"), "w") as f:   # it even looks like a cgroup
        f.write("1\n")
    entries, err = cli_json(root)
    got = fu.values(entries)
    assert set(got) == set(EXPECTED[tree])           # nothing new discovered, nothing lost
    pristine = fu.values(passes[tree][0])[instance]
    assert any(lost(k) for k in pristine)
    # exactly that file's figures are missing; the container's other files still count
    assert got[instance] == {k: x for k, x in pristine.items() if not lost(k)}
    assert "cannot read" in err and name in err
    others_unchanged(passes, tree, got, instance)


@pytest.mark.parametrize("tree, instance, controllers", [
    ("hybrid-debian12", "docker-web1", None),           # all of its directories
    ("hybrid-debian12", "lxc-web", ("memory",)),        # only one hierarchy's
    ("v2-pure", CRIO_INSTANCE, None),
    ("v1-systemd-driver", "k8s-" + SD_PAUSE[:12], ("pids",)),
])
def test_container_removed_between_discover_and_collect(passes, tmp_path, tree, instance, controllers):
    root = fu.copy_tree(tree, tmp_path)
    collector, warnings, infos = fu.collect(root)
    found = collector.discover()
    target = [c for c in found if c.cgroup == EXPECTED[tree][instance][2]]
    assert len(target) == 1
    for directory in target[0].dirs.values():
        if controllers is None or any(directory == container_dir(root, tree, instance, c)
                                      for c in controllers):
            shutil.rmtree(directory)
    results = collector.collect(found)              # must not raise
    got = {r.instance: dict(((t, ti), v[0] if len(v) == 1 else tuple(v)) for t, ti, v in r.samples)
           for r in results}
    assert set(got) == set(EXPECTED[tree]) - {instance}
    others_unchanged(passes, tree, got, instance)
    assert any("gone during the pass" in m for m in infos)
    assert warnings == [] or all("memory.stat field" in w for w in warnings)


@pytest.mark.parametrize("tree, instance", [("v2-pure", "docker-api"),
                                            ("v1-systemd-driver", "k8s-" + SD_APP[:12]),
                                            ("hybrid-debian12", "lxc-web")])
def test_garbage_in_pids_current_skips_only_that_group(passes, tmp_path, tree, instance):
    root = fu.copy_tree(tree, tmp_path)
    with open(os.path.join(container_dir(root, tree, instance, "pids"), "pids.current"), "w") as f:
        f.write("garbage\n")
    entries, err = cli_json(root)
    got = fu.values(entries)
    pristine = fu.values(passes[tree][0])[instance]
    # pids.current is one field: pids_limit (pids.max) still counts
    assert got[instance] == {k: x for k, x in pristine.items() if k != ("count", "pids")}
    assert "malformed pids.current" in err
    others_unchanged(passes, tree, got, instance)


# -- hostile cgroup names through Match ------------------------------------------------

HOSTILE = ["my app", "new\nline", "dots.in.name", "ünïcødé-名前", "tab\tand\x01ctrl",
           "back\\slash", "-leading-dash", "...", "quote'\"", "x" * 200]


def make_cgroup(base, path):
    d = base + path
    os.makedirs(d)
    for name, text in (("pids.current", "3\n"), ("pids.max", "max\n"), ("memory.current", "4096\n")):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)


def test_hostile_names_give_valid_distinct_identifiers(tmp_path):
    root = fu.copy_tree("v2-pure", tmp_path)
    base = os.path.join(root, "sys/fs/cgroup")
    for name in HOSTILE:
        make_cgroup(base, "/hostile/" + name)
    # two paths of more than 300 characters that differ only in their last character
    deep = "/hostile-deep/" + "/".join("level%02d-%s" % (n, "d" * 22) for n in range(10))
    assert len(deep) > 300
    for leaf in ("leaf-a", "leaf-b"):
        make_cgroup(base, deep + "/" + leaf)
    entries, err = cli_json(root, "--match", r"^/hostile/(?P<name>[^/]+)$@hostile",
                            "--match", r"^/hostile-deep/(?P<name>.{250,}/leaf-[ab])$@deep",
                            "--metrics", "pids")
    instances = {e["plugin_instance"] for e in entries}
    hostile = {e["meta"]["cgroup"]: e["plugin_instance"] for e in entries
               if e["meta"]["runtime"] in ("hostile", "deep")}
    assert set(hostile) == {"/hostile/" + n for n in HOSTILE} | {deep + "/leaf-a", deep + "/leaf-b"}
    assert len(set(hostile.values())) == len(hostile)                  # distinct
    for inst in instances:
        assert fu.VALID_NAME.match(inst), repr(inst)                   # no '/', space, control; <= 127
    assert hostile["/hostile/my app"] == "hostile-my_app"
    assert hostile["/hostile/dots.in.name"] == "hostile-dots.in.name"
    assert len(hostile[deep + "/leaf-a"]) == 127
    # the built-in containers are still there under their own names
    assert set(EXPECTED["v2-pure"]) <= instances


def test_names_that_sanitize_alike_stay_distinct(tmp_path):
    root = fu.copy_tree("v2-pure", tmp_path)
    base = os.path.join(root, "sys/fs/cgroup")
    for name in ("my app", "my_app", "my?app", "my\napp"):
        make_cgroup(base, "/hostile/" + name)
    entries, _ = cli_json(root, "--match", r"^/hostile/(?P<name>[^/]+)$@hostile", "--metrics", "pids")
    hostile = {e["meta"]["cgroup"]: e["plugin_instance"] for e in entries
               if e["meta"]["runtime"] == "hostile"}
    assert len(hostile) == 4
    assert len(set(hostile.values())) == 4, hostile


def test_cli_ignore_value_leaves_out_the_matching_values():
    """--ignore-value (the IgnoreValue option) on the captured hybrid tree: matching identifiers gone,
    every other one still there with the same value."""
    full, _ = cli_json(fu.tree("hybrid-debian12"))
    lean, _ = cli_json(fu.tree("hybrid-debian12"), "--ignore-value", "memory-*active_*",
                       "--ignore-value", "vmpage_action-*", "--ignore-value", "total_time_in_ms-pressure_*_full")

    def idents(entries):
        return {(e["plugin_instance"], e["type"], e["type_instance"]): e["values"] for e in entries}
    full, lean = idents(full), idents(lean)
    dropped = {k for k in full if k not in lean}
    assert lean and dropped and set(lean) <= set(full)
    assert all(t == "vmpage_action" or (t == "memory" and "active_" in ti)
               or (t == "total_time_in_ms" and ti.startswith("pressure_") and ti.endswith("_full"))
               for _, t, ti in dropped), sorted(dropped)
    assert {t for _, t, _ in dropped} == {"vmpage_action", "memory", "total_time_in_ms"}
    assert all(lean[k] == full[k] for k in lean)
