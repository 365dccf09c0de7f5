"""The plugin over tests/fixtures/v2-guest-captured: real cgroup v2 files from the v2 guest.

The tree was captured on a real pure v2 kernel (Debian's 6.1, ``cgroup_no_v1=all``; see its
README.md and CAPTURE.json).  Here, without a guest: the CLI's ``--root`` pass over it must find
the four containers, emit exactly what the files carry (checked with tests/v2guest/
guest_sources.py's own parsers), know every field name, and the real files are held against the
hand-written tests/fixtures/v2-pure (which is not changed here): field names and their order,
file formats, the files the plugin reads.
"""

import json
import os
import re

import pytest

from collectd_cgroups import readers
from collectd_cgroups.readers import memory as memory_reader
from tests.support import fixtureutil as fu
from tests.v2guest import guest_sources as src

ROOT = fu.tree("v2-guest-captured")
PURE = fu.tree("v2-pure")

with open(os.path.join(ROOT, "CAPTURE.json")) as _f:
    FACTS = json.load(_f)

KINDS = ("box", "docker", "podman", "bare")


def cgroup_dir(root, cgroup):
    return os.path.join(root, "sys/fs/cgroup" + cgroup.rstrip("/")).rstrip("/")


def pure_docker_dir():
    base = os.path.join(PURE, "sys/fs/cgroup/system.slice")
    found = [d for d in os.listdir(base) if re.match(r"^docker-[0-9a-f]{64}\.scope$", d)]
    assert len(found) == 1
    return os.path.join(base, found[0])


def cli_args():
    return ["--match", FACTS["box"]["match"], "--runtimes", "docker", "podman"]


def values_of(entries):
    """{plugin_instance: {(type, type_instance): value}}; a value is a tuple when its type has
    several data sources (disk_octets: read, write)."""
    out = {}
    for e in entries:
        per = out.setdefault(e["plugin_instance"], {})
        key = (e["type"], e["type_instance"])
        assert key not in per, "identifier dispatched twice: %s %s" % (e["plugin_instance"], key)
        per[key] = e["values"][0] if len(e["values"]) == 1 else tuple(e["values"])
    return out


@pytest.fixture(scope="module")
def captured():
    entries, err = fu.cli_json(ROOT, *cli_args())
    return values_of(entries), entries, err


def test_layout_is_pure_v2():
    rc, out, err = fu.run_cli(["--root", ROOT, "--layout"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "cgroup layout: v2"
    for controller in ("cpu", "cpuacct", "memory", "pids", "blkio"):
        assert any(l.split() == [controller, "v2", ROOT + "/sys/fs/cgroup"] for l in lines), (controller, out)


def test_the_four_containers_and_no_warning(captured):
    v, entries, err = captured
    assert err == "", err
    assert sorted(v) == sorted(FACTS[k]["instance"] for k in KINDS)
    cgroups = {e["plugin_instance"]: e["meta"]["cgroup"] for e in entries}
    for kind in KINDS:
        assert cgroups[FACTS[kind]["instance"]] == FACTS[kind]["cgroup"]


def test_every_identifier_matches_the_captured_files(captured):
    v, entries, err = captured
    problems = []
    for kind in KINDS:
        instance, cgroup = FACTS[kind]["instance"], FACTS[kind]["cgroup"]
        s = src.snapshot(cgroup_dir(ROOT, cgroup), root=ROOT)
        got = v[instance]
        non_disk = {k for k in got if not src.is_disk(*k)}
        wanted = src.expected_identifiers(s)
        if non_disk != wanted:
            problems.append("%s: missing %s, not expected %s" % (instance, sorted(wanted - non_disk),
                                                                 sorted(non_disk - wanted)))
        disk = {k for k in got if src.is_disk(*k)}
        if disk:
            problems += ["%s: %s" % (instance, p) for p in src.disk_coverage(disk, s)]
        for (type_, type_instance), value in got.items():
            try:
                expected = src.expected_value(type_, type_instance, s)
            except KeyError:
                problems.append("%s %s-%s: no source in the files" % (instance, type_, type_instance))
                continue
            entry = [e for e in entries if (e["plugin_instance"], e["type"], e["type_instance"])
                     == (instance, type_, type_instance)][0]
            if tuple(entry["values"]) != expected:
                problems.append("%s %s-%s = %r, files say %r" % (instance, type_, type_instance, entry["values"],
                                                                  expected))
    assert not problems, "\n".join(problems)


def test_what_the_processes_did_shows(captured):
    v = captured[0]
    box, docker = v[FACTS["box"]["instance"]], v[FACTS["docker"]["instance"]]
    assert box[("memory", "limit")] == FACTS["box"]["memory_max"]
    assert box[("derive", "memory_oom_kill")] == 1 and FACTS["box"]["oom_killed_status"] == -9
    assert box[("memory", "anon")] >= FACTS["box"]["touched_mib"] << 20
    assert 0.9 * FACTS["box"]["memory_max"] <= box[("memory", "max_usage")] <= FACTS["box"]["memory_max"]
    assert docker[("count", "pids_limit")] == FACTS["docker"]["pids_max"]
    assert docker[("memory", "high")] == FACTS["docker"]["memory_high"]
    assert docker[("cpu", "total")] >= FACTS["docker"]["burn_s"] * 100
    assert docker[("derive", "cpu_throttled_periods")] > 0
    written = FACTS["box"]["io"]["direct_written"] + FACTS["box"]["io"]["buffered_written"]
    with open(os.path.join(cgroup_dir(ROOT, FACTS["box"]["cgroup"]), "io.stat")) as f:
        line = [l for l in f if l.startswith(FACTS["box"]["disk_dev"] + " ")][0]
    assert int(dict(kv.split("=") for kv in line.split()[1:])["wbytes"]) >= written
    disk = [k for k in box if k[0] == "disk_octets" and k[1] != "total"]
    if disk:            # once the plugin reads io.stat
        assert [k[1] for k in disk] == [FACTS["box"]["disk"]]     # named by the captured uevent
        assert box[disk[0]][1] >= written
    bare = v[FACTS["bare"]["instance"]]
    assert {k[0] for k in bare} == {"cpu", "total_time_in_ms"}


def test_every_captured_field_name_is_known_to_the_plugin():
    """No "unknown field" warning: each memory.stat field is a byte figure or an event counter the
    plugin knows; memory.events and cpu.stat keys all become identifiers (checked above)."""
    for kind in ("box", "docker", "podman"):
        d = cgroup_dir(ROOT, FACTS[kind]["cgroup"])
        for field in src.flat(open(d + "/memory.stat").read()):
            assert field in memory_reader.BYTE_FIELDS or memory_reader.EVENT_FIELD.match(field), field
    collector, warnings, infos = fu.collect(ROOT, match=[(FACTS["box"]["match"], "cgroup")],
                                            runtimes=("docker", "podman"))
    assert len(collector.collect()) == 4
    assert warnings == []


# -- the real files against the hand-written v2-pure --------------------------------------------------------


@pytest.mark.parametrize("name", ["memory.stat", "cpu.stat", "memory.events"])
def test_real_field_names_are_a_subset_of_v2_pure_in_the_same_order(name):
    """v2-pure is written for 6.18; the captured kernel is older: every real field must be in
    v2-pure, in the same order.  (v2-pure's extra fields are those of newer kernels.)"""
    real = fu.flat(ROOT, os.path.relpath(os.path.join(cgroup_dir(ROOT, FACTS["docker"]["cgroup"]), name), ROOT))
    hand = fu.flat(PURE, os.path.relpath(os.path.join(pure_docker_dir(), name), PURE))
    missing = [k for k in real if k not in hand]
    assert not missing, "real %s fields missing from v2-pure: %s" % (name, missing)
    assert [k for k in hand if k in real] == list(real)
    print("%s: v2-pure has %d fields the %s kernel has not: %s" % (name, len(hand) - len(real), FACTS["kernel"],
                                                                   [k for k in hand if k not in real]))


def test_file_formats_agree_with_v2_pure():
    real_dir, hand_dir = cgroup_dir(ROOT, FACTS["box"]["cgroup"]), pure_docker_dir()
    # io.stat: MAJ:MIN then the same keys, in the same order
    def io_keys(d):
        with open(d + "/io.stat") as f:
            return [[kv.split("=")[0] for kv in line.split()[1:]] for line in f if line.strip()]
    assert io_keys(real_dir)[0] == io_keys(hand_dir)[0] == ["rbytes", "wbytes", "rios", "wios", "dbytes", "dios"]
    # *.pressure: "some" and "full" lines with avg10 avg60 avg300 total
    for r in ("cpu", "memory", "io"):
        for d in (real_dir, hand_dir):
            with open("%s/%s.pressure" % (d, r)) as f:
                lines = [l.split() for l in f]
            assert [l[0] for l in lines] == ["some", "full"]
            assert all([kv.split("=")[0] for kv in l[1:]] == ["avg10", "avg60", "avg300", "total"] for l in lines)
    # the root's controllers and /proc/cgroups (every v1 controller on hierarchy 0)
    assert fu.read(ROOT, "sys/fs/cgroup/cgroup.controllers") == fu.read(PURE, "sys/fs/cgroup/cgroup.controllers")

    def proc_cgroups(root):
        return [(l.split()[0], l.split()[1], l.split()[3]) for l in fu.read(root, "proc/cgroups").splitlines()[1:]]
    assert [(c, h) for c, h, _ in proc_cgroups(ROOT)] == [(c, h) for c, h, _ in proc_cgroups(PURE)]
    assert {h for _, h, _ in proc_cgroups(ROOT)} == {"0"}


def test_the_files_the_plugin_reads_exist_alike():
    """Every file the plugin reads on v2 is in the real docker scope exactly when it is in v2-pure's."""
    wanted = set()
    for reader in readers.build(readers.GROUPS):
        for entry in reader.files_v2:
            wanted.update(entry if isinstance(entry, tuple) else (entry,))
    real = wanted & set(os.listdir(cgroup_dir(ROOT, FACTS["docker"]["cgroup"])))
    hand = wanted & set(os.listdir(pure_docker_dir()))
    assert real == hand, "only real: %s; only v2-pure: %s" % (sorted(real - hand), sorted(hand - real))


def test_an_idle_cgroup_has_an_empty_io_stat():
    """The real kernel lists no device in io.stat for a cgroup that did no I/O: an empty file (v2-pure's
    containers all have a line).  The plugin emits no block I/O identifier for it and warns not."""
    with open(os.path.join(cgroup_dir(ROOT, FACTS["docker"]["cgroup"]), "io.stat")) as f:
        assert f.read() == ""
    entries, err = fu.cli_json(ROOT, *cli_args())
    assert not [e for e in entries if e["plugin_instance"] == FACTS["docker"]["instance"] and src.is_disk(
        e["type"], e["type_instance"])]
    assert err == ""


def test_fixture_tree_is_documented_and_survives_git():
    assert os.path.isfile(os.path.join(ROOT, "README.md"))
    for directory, subdirs, files in os.walk(ROOT):
        assert subdirs or files, directory
