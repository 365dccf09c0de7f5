"""The v2 part of the suite: the in-guest tests on a real pure cgroup v2 kernel.

Boots the v2 guest (tests/v2guest: a stock Debian kernel with ``cgroup_no_v1=all`` under qemu,
TCG, no network device) once for this module, runs the in-guest suite there (tests/v2guest/
guest_*.py: hierarchy detection, discovery, every identifier against the kernel's files and the
processes' own /proc, OOM kill, io.stat, a real collectd, a capture of the real files), streams
its output here line by line ("[v2guest] ..."), and checks its exit status and its report.

Nothing is skipped: without qemu, busybox or the kernel package (`make deps`, and apt reaching
Debian for the first download) the module fixture raises and every test here errors, loudly.
The first run on a machine downloads the kernel package (~71 MB) and builds the initramfs into
.cache/v2guest; later runs reuse it.
"""

import ast
import glob
import json
import os
import shutil
import time
import xml.etree.ElementTree as ET

import pytest

from tests.support import FIXTURES
from tests.v2guest import build, run

FIXTURE = os.path.join(FIXTURES, "v2-guest-captured")


@pytest.fixture(scope="module")
def guest(tmp_path_factory, pytestconfig):
    report = str(tmp_path_factory.mktemp("v2guest-report"))
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")

    def stream(line):
        print("[v2guest] %s" % line, flush=True)

    with capman.global_and_fixture_disabled():
        print("\n[v2guest] booting the pure cgroup v2 guest; report folder %s" % report, flush=True)
        result = run.run_suite(report, stream=stream, log=stream)
        print("[v2guest] exit status %s after %.1f s" % (result.status, result.seconds), flush=True)
    yield result
    if os.path.exists(result.canary):          # never expected; do not leave it in the checkout
        os.unlink(result.canary)


def tail(result, n=120):
    return "\n".join(result.output.splitlines()[-n:])


def guest_tests():
    """{file: [test function names]} of the in-guest suite, from its source."""
    out = {}
    for name in run.SUITE:
        with open(os.path.join(run.HERE, name)) as f:
            tree = ast.parse(f.read())
        out[name] = sorted(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))
    return out


def test_the_in_guest_suite_passes(guest):
    assert guest.status is not None, "the guest gave no exit status:\n%s" % tail(guest)
    assert guest.status == 0, "in-guest suite failed (pytest status %s):\n%s" % (guest.status, tail(guest))


def test_the_report_lists_every_in_guest_test_as_passed(guest):
    junit = os.path.join(guest.report, "junit.xml")
    assert os.path.exists(junit), "no JUnit report from the guest:\n%s" % tail(guest)
    cases = ET.parse(junit).getroot().iter("testcase")
    ran, bad = {}, []
    for case in cases:
        module = case.get("classname").rsplit(".", 1)[-1] + ".py"
        ran.setdefault(module, []).append(case.get("name"))
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                bad.append("%s::%s %s: %s" % (module, case.get("name"), child.tag, (child.get("message") or "")[:300]))
    assert not bad, "\n".join(bad)
    assert {m: sorted(names) for m, names in ran.items()} == guest_tests()
    assert sum(len(v) for v in ran.values()) >= 20


def test_the_guest_ran_the_debian_kernel_with_cgroup_v1_off(guest):
    with open(os.path.join(guest.report, "guest-facts.json")) as f:
        facts = json.load(f)
    assert facts["uname"] == guest.guest.kver
    assert guest.guest.package == "linux-image-" + guest.guest.kver
    assert "cgroup_no_v1=all" in facts["cmdline"]
    assert facts["net"] == ["lo"]


def test_nothing_the_guest_wrote_reached_the_host(guest):
    with open(os.path.join(guest.report, "guest-facts.json")) as f:
        facts = json.load(f)
    # the guest wrote this file into the checkout as it sees it (an overlay over a read-only share)
    assert facts["canary"] == guest.canary
    assert not os.path.exists(guest.canary), "a file the guest wrote reached the host: %s" % guest.canary
    # what is in the report folder came from the runner or the guest's /report, and nothing else
    assert sorted(os.listdir(guest.report)) == ["captured", "console.log", "exit-status", "guest-facts.json",
                                               "junit.xml", "run.sh"]


def test_qemu_has_no_network_and_one_writable_share():
    guest_ = build.Guest("/cache/x", "6.1.0-0-amd64", "linux-image-6.1.0-0-amd64", "6.1.0-0")
    argv = run.qemu_argv(guest_, "/r", "/r/scratch.img")
    assert "-nodefaults" in argv and argv[argv.index("-nic") + 1] == "none"
    assert not any(a.startswith(("-netdev", "user,", "tap,")) for a in argv) and "-net" not in argv
    shares = [argv[i + 1] for i, a in enumerate(argv) if a == "-virtfs"]
    assert len(shares) == 2
    root, report = shares
    assert "path=/," in root and "readonly=on" in root.split(",")
    assert "path=/r," in report
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives == ["file=/r/scratch.img,format=raw,if=virtio,cache=unsafe"]   # inside the report folder
    assert "accel=tcg" in argv[argv.index("-machine") + 1]
    assert "cgroup_no_v1=all" in argv[argv.index("-append") + 1].split()


def test_the_cached_guest_is_reused(guest):
    before = os.stat(guest.guest.initrd).st_mtime_ns
    start = time.monotonic()
    again = build.build(log=lambda msg: pytest.fail("a cached guest was rebuilt: %s" % msg))
    took = time.monotonic() - start
    assert again.dir == guest.guest.dir and os.stat(again.initrd).st_mtime_ns == before
    print("cache hit in %.2f s: %s" % (took, again.dir))
    entries = [e for e in os.listdir(build.cache_root()) if not e.startswith(".")]
    assert entries == [os.path.basename(guest.guest.dir)], "stale builds left in the cache: %s" % entries


def test_missing_qemu_fails_loudly(monkeypatch):
    which = shutil.which
    monkeypatch.setattr(build.shutil, "which", lambda name: None if name == build.QEMU else which(name))
    with pytest.raises(build.BuildError) as e:
        build.build(log=lambda msg: None)
    assert "qemu-system-x86_64" in str(e.value) and "make deps" in str(e.value)


def test_a_bare_machine_gets_the_package_lists_first(monkeypatch):
    """apt that knows no package (no lists yet): the builder runs apt-get update, then resolves the
    kernel that linux-image-amd64 depends on."""
    calls, updated = [], []

    class Res(object):
        def __init__(self, out, rc=0):
            self.stdout, self.stderr, self.returncode = out, "", rc

    def fake_run(argv, **kw):
        calls.append(argv[:2])
        if argv[:2] == ["apt-get", "update"]:
            updated.append(True)
            return Res("")
        if not updated:
            return Res("N: Unable to locate package %s\n" % argv[-1])
        if argv[:2] == ["apt-cache", "policy"]:
            return Res("%s:\n  Installed: (none)\n  Candidate: 6.1.99-1\n" % argv[-1])
        return Res("linux-image-amd64\n  Depends: linux-image-6.1.0-99-amd64\n")
    monkeypatch.setattr(build, "_run", fake_run)
    assert build.resolve_kernel(log=lambda msg: None) == ("linux-image-6.1.0-99-amd64", "6.1.99-1", "6.1.0-99-amd64")
    assert ["apt-get", "update"] in calls and calls.index(["apt-get", "update"]) == 1


# -- the initramfs ------------------------------------------------------------------------------------------


def read_newc(path):
    """{name: (mode, data)} of a newc cpio archive (our own reader)."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701", "bad cpio header at %d" % pos
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[pos:pos + filesize])
        pos += filesize
        pos += -pos % 4


def test_the_initramfs_holds_init_busybox_and_modules_in_dependency_order(guest):
    files = read_newc(guest.guest.initrd)
    with open(build.INIT_SCRIPT, "rb") as f:
        assert files["init"][1] == f.read()
    with open(build.BUSYBOX, "rb") as f:
        assert files["bin/busybox"][1] == f.read()
    assert files["dev/console"][0] & 0o170000 == 0o020000        # a character device
    order = files["lib/modules/load-order"][1].decode().split()
    loaded = set()
    for ko in order:
        info = build.modinfo(files["lib/modules/" + ko][1])
        assert info["name"] == [ko[:-3]]
        deps = [d for d in ",".join(info.get("depends", [])).split(",") if d]
        assert set(d.replace("-", "_") for d in deps) <= loaded, (ko, deps, loaded)
        assert info["vermagic"][0].split()[0] == guest.guest.kver
        loaded.add(ko[:-3])
    assert {m.replace("-", "_") for m in build.MODULES} <= loaded


# -- the fresh capture against the committed one --------------------------------------------------------------


def _container_dirs(root):
    with open(os.path.join(root, "CAPTURE.json")) as f:
        facts = json.load(f)
    return {kind: os.path.join(root, "sys/fs/cgroup" + facts[kind]["cgroup"]) for kind in ("box", "docker",
                                                                                           "podman", "bare")}, facts


def _keys(path):
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def test_a_fresh_capture_has_the_committed_fixture_shape(guest):
    """The files and field names the guest's kernel has now are those of tests/fixtures/v2-guest-captured
    (same kernel release); with another release the differences are printed and the plugin must still
    know every field (the in-guest suite fails on an unknown one)."""
    fresh_dirs, fresh = _container_dirs(os.path.join(guest.report, "captured"))
    fixed_dirs, fixed = _container_dirs(FIXTURE)
    differences = []
    for kind in fresh_dirs:
        a, b = fresh_dirs[kind], fixed_dirs[kind]
        if sorted(os.listdir(a)) != sorted(os.listdir(b)):
            differences.append("%s: files %s" % (kind, sorted(set(os.listdir(a)) ^ set(os.listdir(b)))))
        for name in ("memory.stat", "memory.events", "cpu.stat"):
            if os.path.exists(os.path.join(a, name)) or os.path.exists(os.path.join(b, name)):
                ka, kb = _keys(os.path.join(a, name)), _keys(os.path.join(b, name))
                if ka != kb:
                    differences.append("%s %s: now %s, fixture %s" % (kind, name, ka, kb))
    print("kernel now %s, fixture %s; differences: %s" % (fresh["kernel"], fixed["kernel"], differences or "none"))
    if fresh["kernel"] == fixed["kernel"]:
        assert not differences, "refresh tests/fixtures/v2-guest-captured (run.py --capture-fixture)?"
    assert sorted(glob.glob(os.path.join(guest.report, "captured", "sys/dev/block/*/uevent")))
