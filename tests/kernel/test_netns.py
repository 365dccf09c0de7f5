"""The setns shim (collectd_cgroups.netns) on real network namespaces made by these tests.

Each test that enters namespaces does it on a thread of its own, so a bug cannot leave pytest's main
thread in a foreign namespace.  Namespaces: ``ip netns add ccgt<hex>-...`` and the lab of
test_network.py (``unshare --net`` sleep processes in cgroups of ours); all removed in teardown.
"""

import errno
import os
import secrets
import subprocess
import sys
import textwrap
import threading

import pytest

from collectd_cgroups import fs, netns
from tests.support import CHECKOUT
from tests.support.netnsutil import nsfs_fds, ns_of, run, wait_for


def on_thread(fn, *args):
    """Run ``fn`` on a fresh thread; return its result or raise its exception."""
    out = {}

    def body():
        try:
            out["value"] = fn(*args)
        except BaseException as e:     # handed to the caller
            out["error"] = e
    t = threading.Thread(target=body)
    t.start()
    t.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def spaces():
    """Two named network namespaces: {name: /run/netns path}."""
    tag = "ccgt" + secrets.token_hex(3)
    made = {}
    try:
        for n in ("a", "b"):
            name = "%s-%s" % (tag, n)
            run("ip", "netns", "add", name)
            made[n] = "/run/netns/" + name
        yield made
    finally:
        for path in made.values():
            run("ip", "netns", "del", os.path.basename(path), check=False)


def test_entered_moves_only_this_thread_and_brings_it_back(spaces):
    host = ns_of("/proc/thread-self/ns/net")

    def body():
        seen = {}
        with netns.entered(spaces["a"]):
            seen["inside"] = netns.thread_ns_ident()
            seen["main"] = ns_of("/proc/self/ns/net")       # the process's main thread stays where it was
            with netns.entered(spaces["b"]):                # nested: back to a, then home
                seen["nested"] = netns.thread_ns_ident()
            seen["after_nested"] = netns.thread_ns_ident()
        seen["after"] = netns.thread_ns_ident()
        return seen
    seen = on_thread(body)
    assert seen["inside"] == ns_of(spaces["a"]) != host
    assert seen["nested"] == ns_of(spaces["b"])
    assert seen["after_nested"] == ns_of(spaces["a"])
    assert seen["main"] == host and seen["after"] == host
    assert nsfs_fds() == []


def test_an_exception_inside_returns_the_thread(spaces):
    host = ns_of("/proc/thread-self/ns/net")

    class Boom(Exception):
        pass

    def body():
        fds = len(os.listdir("/proc/self/fd"))
        try:
            with netns.entered(spaces["a"]):
                assert netns.thread_ns_ident() == ns_of(spaces["a"])
                raise Boom()
        except Boom:
            pass
        return netns.thread_ns_ident(), len(os.listdir("/proc/self/fd")) - fds
    where, extra_fds = on_thread(body)
    assert where == host and extra_fds == 0


def test_entered_with_a_descriptor_or_handle_leaves_it_to_the_caller(spaces):
    def body():
        fd = os.open(spaces["a"], os.O_RDONLY)
        try:
            with netns.Home() as home:
                with netns.entered(fd, home):
                    inside = netns.thread_ns_ident()
                os.fstat(fd)                                # still open: the caller's
                handle = netns.NsHandle(os.dup(fd), spaces["a"])
                with netns.entered(handle, home):
                    handle.close()                          # closing inside is allowed
                    inside2 = netns.thread_ns_ident()
            return inside, inside2, netns.thread_ns_ident()
        finally:
            os.close(fd)
    inside, inside2, after = on_thread(body)
    assert inside == inside2 == ns_of(spaces["a"]) and after == ns_of("/proc/self/ns/net")
    assert nsfs_fds() == []


def test_errors_carry_errno_and_the_namespace_path(tmp_path):
    missing = str(tmp_path / "no-such-ns")
    with pytest.raises(netns.NamespaceError) as e:
        on_thread(lambda: netns.entered(missing).__enter__())
    assert e.value.errno == errno.ENOENT and e.value.filename == missing
    assert missing in str(e.value) and "ENOENT" in str(e.value)

    def not_a_namespace():
        fd = os.open("/dev/null", os.O_RDONLY)
        try:
            with netns.entered(netns.NsHandle(fd, "/dev/null")):
                pass
        finally:
            os.close(fd)
    with pytest.raises(netns.NamespaceError) as e:
        on_thread(not_a_namespace)
    assert e.value.errno == errno.EINVAL and "/dev/null" in str(e.value)
    # A namespace of another type: setns(CLONE_NEWNET) refuses it.
    with pytest.raises(netns.NamespaceError) as e:
        on_thread(lambda: netns.entered("/proc/self/ns/uts").__enter__())
    assert e.value.errno == errno.EINVAL and "/proc/self/ns/uts" in str(e.value)
    assert on_thread(netns.thread_ns_ident) == ns_of("/proc/self/ns/net")
    assert nsfs_fds() == []


def test_home_belongs_to_its_thread(spaces):
    home = netns.Home()
    try:
        with pytest.raises(RuntimeError):
            on_thread(lambda: netns.entered(spaces["a"], home).__enter__())
    finally:
        home.close()
    assert nsfs_fds() == []


def test_shim_is_cffi_abi_mode_over_libc():
    impl = netns._cffi_setns()
    assert impl.__module__ == netns.__name__
    import _cffi_backend
    assert _cffi_backend.__file__.startswith(sys.prefix)    # the venv's, like collectd's ModulePath gets
    with pytest.raises(OSError) as e:
        impl(-1, netns.CLONE_NEWNET)
    assert e.value.errno == errno.EBADF


def test_generated_shim_module_matches_cdef(tmp_path):
    """collectd_cgroups/_setns_cffi.py is what cffi generates for netns.CDEF (out-of-line ABI mode)."""
    import cffi
    ffi = cffi.FFI()
    ffi.cdef(netns.CDEF)
    ffi.set_source("collectd_cgroups._setns_cffi", None)
    generated = ffi.compile(tmpdir=str(tmp_path))
    committed = os.path.join(os.path.dirname(netns.__file__), "_setns_cffi.py")
    with open(generated) as a, open(committed) as b:
        assert a.read() == b.read(), ("regenerate it: python -c 'import cffi; f = cffi.FFI(); f.cdef(%r); "
                                      "f.set_source(\"collectd_cgroups._setns_cffi\", None); f.compile()'"
                                      % netns.CDEF)


def test_shim_loads_no_c_parser():
    """At run time the shim needs cffi's backend only: no pycparser (2.7 MiB of collectd's memory)."""
    code = ("import sys; from collectd_cgroups import netns; impl = netns._cffi_setns(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pycparser', 'cffi')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(netns.__file__)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True, timeout=60)
    assert out.stdout.decode().strip() == "[]", out


# -- a PID's namespace -------------------------------------------------------------------------------------------

def test_pidfd_namespace_ioctl_on_this_kernel():
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert netns.pidfd_ioctl_supported() == ((major, minor) >= (6, 11))


def test_open_netns_pidfd_and_proc_paths_agree(lab, monkeypatch):
    b = lab.box("o1")
    want = ns_of("/proc/%d/ns/net" % b.pid)
    for use_pidfd in (True, False):
        with netns.open_netns(b.pid, b.cgroup, use_pidfd=use_pidfd) as h:
            assert h.ident == want and h.path == "/proc/%d/ns/net" % b.pid
    # A kernel without PIDFD_GET_NET_NAMESPACE (before 6.11): pidfd for the check, /proc for the namespace.
    monkeypatch.setattr(netns, "_ioctl_works", False)
    with netns.open_netns(b.pid, b.cgroup, use_pidfd=True) as h:
        assert h.ident == want
    assert nsfs_fds() == []


def test_open_netns_gone_and_moved(lab):
    b = lab.box("o2", veth=False)
    other = lab.box("o3", veth=False)
    with pytest.raises(netns.PidMoved):
        netns.open_netns(other.pid, b.cgroup)
    with pytest.raises(netns.PidMoved):                 # a cgroup that merely starts like the container's
        netns.open_netns(b.pid, b.cgroup[:-1])
    b.stop()
    for use_pidfd in (True, False):
        with pytest.raises(fs.Gone):
            netns.open_netns(b.pid, b.cgroup, use_pidfd=use_pidfd)
    assert nsfs_fds() == []


def test_process_exiting_during_the_check_is_caught_by_the_pidfd(lab, monkeypatch):
    """The PID names the pidfd's process while /proc/<pid>/cgroup is read only if that process still lives
    afterwards: one that exits during the check is reported gone, not checked against a stranger."""
    b = lab.box("o4", veth=False)
    real = netns.pid_in_cgroup

    def exits_meanwhile(pid, cgroup, proc_root="/proc"):
        ok = real(pid, cgroup, proc_root)
        b.stop()
        return ok
    monkeypatch.setattr(netns, "pid_in_cgroup", exits_meanwhile)
    with pytest.raises(fs.Gone):
        netns.open_netns(b.pid, b.cgroup, use_pidfd=True)
    assert nsfs_fds() == []


def _counting_checks(monkeypatch):
    """Count the reads of /proc/<pid>/cgroup (the check a kept pidfd spares)."""
    calls = []
    real = netns.pid_in_cgroup

    def counted(pid, cgroup, proc_root="/proc"):
        calls.append(pid)
        return real(pid, cgroup, proc_root)
    monkeypatch.setattr(netns, "pid_in_cgroup", counted)
    return calls


def kept_fds():
    """Descriptors of this process that are pidfds (``anon_inode:[pidfd]``, or pidfs's ``pidfd:`` name)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if "pidfd" in target:
            found.append(int(fd))
    return found


@pytest.mark.parametrize("ioctl", [True, False], ids=["pidfd-namespace", "proc-namespace"])
def test_kept_pidfd_checks_the_cgroup_once_then_every_recheck_uses(lab, monkeypatch, ioctl):
    b = lab.box("k1", veth=False)
    if not ioctl:                   # a kernel before 6.11: the namespace from /proc, the pidfd for the check
        monkeypatch.setattr(netns, "_ioctl_works", False)
    elif not netns.pidfd_ioctl_supported():
        pytest.skip("this kernel has no PIDFD_GET_NET_NAMESPACE (Linux 6.11+)")
    calls = _counting_checks(monkeypatch)
    budget = fs.DescriptorBudget(limit=10)
    kept = netns.KeptPidfds(recheck=3, budget=budget)
    want = ns_of("/proc/%d/ns/net" % b.pid)
    before = set(kept_fds())
    try:
        for _ in range(7):
            with kept.open_netns(b.pid, b.cgroup) as h:
                assert h.ident == want
        # Opened and checked once, then 3 uses, checked again (a new pidfd), 3 uses.
        assert len(calls) == 2, calls
        assert len(kept) == 1 and budget.used == 1
        fd = kept.kept[b.pid][0]
        assert fd >= fs.FD_FLOOR and set(kept_fds()) - before == {fd}
        assert nsfs_fds() == []         # no namespace descriptor outlives its handle
        # Another cgroup for the same PID: checked at once (and refused).
        with pytest.raises(netns.PidMoved):
            kept.open_netns(b.pid, b.cgroup + "/elsewhere")
        assert len(kept) == 0 and budget.used == 0
    finally:
        kept.close()
    assert set(kept_fds()) == before and budget.used == 0


def test_kept_pidfd_holds_no_namespace_and_sees_the_exit(lab, monkeypatch):
    """The property the design rests on: a container whose process exits loses its namespace (the host end
    of its veth goes) while the plugin still holds that process's pidfd; the next open says it is gone."""
    b = lab.box("k2")
    keep = lab.box("k3", veth=False)
    kept = netns.KeptPidfds(budget=fs.DescriptorBudget(limit=10))
    try:
        kept.open_netns(b.pid, b.cgroup).close()
        kept.open_netns(keep.pid, keep.cgroup).close()
        assert len(kept) == 2
        assert b.host_if in lab.host_links()
        b.stop()
        wait_for(lambda: b.host_if not in lab.host_links(), 20, "the host end of the veth to go")
        assert b.pid in kept.kept      # still held: the namespace went all the same
        with pytest.raises(fs.Gone):
            kept.open_netns(b.pid, b.cgroup)
        assert b.pid not in kept.kept
        # A pass that no longer sees a PID closes its pidfd.
        kept.retain(set())
        assert len(kept) == 0
    finally:
        kept.close()


def test_kept_pidfd_of_a_process_moved_out_is_found_at_the_recheck(lab, monkeypatch):
    """A process moved to another cgroup by hand keeps its kept pidfd for at most ``recheck`` uses."""
    b = lab.box("k4", veth=False)
    other = lab.box("k5", veth=False)
    kept = netns.KeptPidfds(recheck=2, budget=fs.DescriptorBudget(limit=10))
    try:
        kept.open_netns(b.pid, b.cgroup).close()
        lab.move(b.pid, other.dirs)
        outcomes = []
        for _ in range(3):
            try:
                kept.open_netns(b.pid, b.cgroup).close()
                outcomes.append("read")
            except netns.PidMoved:
                outcomes.append("moved")
        assert outcomes == ["read", "read", "moved"]
    finally:
        kept.close()


def test_kept_pidfds_stop_at_the_budget(lab):
    boxes = [lab.box("k%d" % n, veth=False) for n in (6, 7, 8)]
    budget = fs.DescriptorBudget(limit=2)
    kept = netns.KeptPidfds(budget=budget)
    try:
        for _ in range(2):
            for b in boxes:
                kept.open_netns(b.pid, b.cgroup).close()
        assert len(kept) == 2 and budget.used == 2      # the third PID is opened afresh each time
    finally:
        kept.close()
    assert budget.used == 0 and nsfs_fds() == []


def test_pid_in_cgroup_accepts_sub_cgroups_only(lab):
    b = lab.box("o5", veth=False)
    assert netns.pid_in_cgroup(b.pid, b.cgroup)
    assert netns.pid_in_cgroup(b.pid, b.cgroup + "/")
    assert netns.pid_in_cgroup(b.pid, os.path.dirname(b.cgroup))       # the container's parent: below it
    assert not netns.pid_in_cgroup(b.pid, b.cgroup + "x")
    assert not netns.pid_in_cgroup(b.pid, b.cgroup + "/sub")


# -- collectd's interpreter ---------------------------------------------------------------------------------------

def test_shim_works_in_debians_python_with_the_venv_as_module_path(spaces):
    """collectd embeds /usr/bin/python3.11 and reaches the venv only through ModulePath (no .pth files):
    the same sys.path must give cffi and its backend from the venv, and a working setns."""
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    code = textwrap.dedent("""
        import sys
        sys.path[:0] = [%r, %r]          # ModulePath entries are prepended
        import _cffi_backend, cffi
        from collectd_cgroups import netns
        before = netns.thread_ns_ident()
        with netns.entered(%r):
            inside = netns.thread_ns_ident()
        print(_cffi_backend.__file__, cffi.__version__, inside != before, netns.thread_ns_ident() == before)
    """) % (CHECKOUT, site, spaces["a"])
    out = subprocess.run(["/usr/bin/python3.11", "-I", "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    backend, version, moved, back = out.stdout.decode().split()
    assert backend.startswith(site) and moved == "True" and back == "True"
