"""The Debian package, the Debian way, on this machine's own dpkg and Debian's collectd.

``packaging/build-deb.sh`` (what ``make deb`` runs) builds the package with dpkg-buildpackage (debhelper,
dh-python/pybuild) from a staged copy of the product, and fails on any lintian error or warning.  The
package is then installed with ``apt-get install ./collectd-cgroups_*.deb`` next to Debian's ``collectd``
package (installed here if missing, and purged again), with collectd started by its init script (no init
system runs here): enabled on install with no ``ModulePath`` anywhere, a running collectd restarted by the
maintainer scripts, an edited block kept across an upgrade, and after ``remove`` and ``purge`` a collectd
that starts and a filesystem without a file of the package.

This machine forbids services in maintainer scripts (``/usr/sbin/policy-rc.d`` exits 101, as in a Docker
image); a real host allows them, so apt-get runs in a mount namespace of its own in which a permissive
policy-rc.d is bind-mounted over it.  The machine is put back: package purged, the test's collectd
stopped by the PID in its pidfile, ``/etc/collectd`` byte for byte as before (checksums).
"""

import glob
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import time

import pytest

from ccg_lab.synthetic import CgroupTree
from tests.support import CHECKOUT
from tests.support.collectd_harness import wait_until
from tests.support.kernelutil import CLK_TCK, proc_alive, proc_cpu_ticks

BUILD_DEB = os.path.join(CHECKOUT, "packaging", "build-deb.sh")
PACKAGE = "collectd-cgroups"
ETC = "/etc/collectd"
BLOCK = ETC + "/collectd-cgroups.conf"
LINK = ETC + "/collectd.conf.d/collectd-cgroups.conf"
DANGLING = ETC + "/collectd.conf.d/zz-ccg-dangling.conf"      # the test's control: a block without its module
STATE = "/var/lib/collectd-cgroups"
INIT = "/etc/init.d/collectd"
PIDFILE = "/run/collectd.pid"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
SITE = "/usr/lib/python3/dist-packages"
# Where Debian's collectd.conf has rrdtool write (every collectd the test runs writes there).
RRD = "/var/lib/collectd/rrd"
# Debian's tools and interpreter, not whatever python3 comes first on this machine's PATH.
SYSTEM_ENV = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin", DEBIAN_FRONTEND="noninteractive")
# Debian's collectd.conf sets no Interval: collectd's default.
DEBIAN_INTERVAL = 10


def run(cmd, check=True, timeout=300, **kwargs):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=SYSTEM_ENV, **kwargs)
    if check and res.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (cmd, res.returncode, res.stdout[-3000:], res.stderr[-3000:]))
    return res


def installed(package):
    res = run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], check=False)
    return res.returncode == 0 and res.stdout == "installed"


def package_state(package):
    res = run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], check=False)
    return res.stdout if res.returncode == 0 else "unknown"


def apt_get(workdir, *args):
    """apt-get as a host with services allowed runs it; conffile questions answered as unattended upgrades
    do (keep the admin's file, take the new one where it was not edited)."""
    cmd = ["apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef",
           "-o", "Dpkg::Options::=--force-confold"] + list(args)
    if os.path.exists(POLICY_RC_D):
        allow = os.path.join(str(workdir), "policy-rc.d-allow")
        with open(allow, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(allow, 0o755)
        cmd = ["unshare", "--mount", "--propagation", "slave", "sh", "-c",
               'mount --bind "$0" %s && exec "$@"' % POLICY_RC_D, allow] + cmd
    return run(cmd, timeout=600)


def etc_checksums():
    """{path: sha256 of the file, or '-> target' of a link, or 'dir'} of everything under /etc/collectd."""
    found = {}
    for directory, dirs, files in os.walk(ETC):
        found[directory] = "dir"
        for name in dirs + files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                found[path] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    found[path] = hashlib.sha256(f.read()).hexdigest()
    return found


def daemon_pid():
    """The PID in collectd's pidfile (collectdmon's, with Debian's defaults), if that process lives."""
    try:
        with open(PIDFILE) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if proc_alive(pid) else None


def collectd_children(monitor):
    """The collectd processes collectdmon runs (their PIDs)."""
    out = run(["ps", "-o", "pid=,comm=", "--ppid", str(monitor)], check=False).stdout.split("\n")
    return [int(line.split()[0]) for line in out if line.split()[1:] == ["collectd"]]


def collectd_test_mode(machine):
    """``collectd -T`` on Debian's configuration as it is: (exit code, its output and what it logged)."""
    offset = os.path.getsize(machine.log) if os.path.exists(machine.log) else 0
    res = run(["/usr/sbin/collectd", "-T", "-C", ETC + "/collectd.conf"], check=False, timeout=120, cwd="/")
    with open(machine.log, errors="replace") as f:
        f.seek(offset)
        return res.returncode, res.stdout + res.stderr + f.read()


def assert_clean_start(machine, when):
    rc, out = collectd_test_mode(machine)
    assert rc == 0 and "rror" not in out and "Exiting normally" in out, "collectd -T %s:\n%s" % (when, out)


def csv_value(csvdir, instance, value):
    """The newest raw value of ``<host>/<instance>/<value>`` in the csv writer's files, or None."""
    files = sorted(glob.glob(os.path.join(csvdir, "*", instance, value + "-*")))
    if not files:
        return None
    with open(files[-1]) as f:
        lines = [line for line in f.read().splitlines() if line and line[0].isdigit()]
    return float(lines[-1].split(",")[1]) if lines else None


# -- the build ------------------------------------------------------------------------------------------------

class Built(object):
    def __init__(self, current, version, previous, lintian, seconds):
        self.current, self.version, self.previous = current, version, previous
        self.lintian, self.seconds = lintian, seconds


def build_previous(out, version):
    """The same source as a lower version whose block differs by a comment: the upgrade a user meets when
    the packaged block changed and their copy was edited."""
    staged = os.path.join(str(out), "src", "%s-%s" % (PACKAGE, version))
    tree = os.path.join(str(out), "previous", "%s-%s~prev1" % (PACKAGE, version))
    shutil.copytree(staged, tree, symlinks=True)
    changelog = os.path.join(tree, "debian", "changelog")
    with open(changelog) as f:
        old = f.read()
    with open(changelog, "w") as f:
        f.write("%s (%s~prev1) unstable; urgency=medium\n\n  * The previous version (test build).\n\n -- Test "
                "<test@users.noreply.example>  Thu, 03 Dec 2026 00:00:00 +0000\n\n%s" % (PACKAGE, version, old))
    block = os.path.join(tree, "conf", "collectd-cgroups.conf")
    with open(block, "a") as f:
        f.write("# (the previous version's block)\n")
    run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=tree, timeout=600)
    return os.path.join(os.path.dirname(tree), "%s_%s~prev1_all.deb" % (PACKAGE, version))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    started = time.monotonic()
    res = run([BUILD_DEB, str(out)], timeout=900)
    seconds = time.monotonic() - started
    current = res.stdout.strip().splitlines()[-1]
    version = run(["dpkg-deb", "-f", current, "Version"]).stdout.strip()
    with open(os.path.join(str(out), "lintian.txt")) as f:
        lintian = f.read()
    return Built(current, version, build_previous(out, version), lintian, seconds)


def test_package_is_lintian_clean_and_ships_the_package(built, tmp_path):
    print("built in %.1f s; lintian said: %r" % (built.seconds, built.lintian.strip()))
    tags = [line for line in built.lintian.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    assert not [t for t in tags if t[:2] in ("E:", "W:")], built.lintian
    assert not tags, "informational tags, to explain in the README or override: %s" % tags
    fields = run(["dpkg-deb", "-f", built.current, "Package", "Version", "Depends", "Installed-Size",
                  "Maintainer", "Description"]).stdout
    print(fields)
    depends = [d.strip() for d in fields.split("Depends:")[1].split("\n")[0].split(",")]
    names = {d.split()[0] for d in depends}
    python_so = run(["objdump", "-p", "/usr/lib/collectd/python.so"]).stdout
    libpython = [w.split(".so")[0] for w in python_so.split() if w.startswith("libpython3.")]
    assert names == {"collectd-core", libpython[0], "python3-cffi-backend", "python3:any"}, depends
    assert int(fields.split("Installed-Size:")[1].split()[0]) > 100, fields
    for word in ("CPU", "memory", "I/O", "network", "Kubernetes", "final figures"):
        assert word in fields, "the description does not say %r" % word
    root = tmp_path / "root"
    run(["dpkg-deb", "-x", built.current, str(root)])
    shipped = sorted(os.path.relpath(os.path.join(d, n), str(root))
                     for d, _, ns in os.walk(str(root)) for n in ns)
    package = sorted(os.path.relpath(os.path.join(d, n), CHECKOUT)
                     for d, subdirs, ns in os.walk(os.path.join(CHECKOUT, "collectd_cgroups"))
                     if "__pycache__" not in d for n in ns if n.endswith(".py"))
    in_site = sorted(os.path.relpath(p, SITE[1:])
                     for p in shipped if p.startswith(SITE[1:] + "/collectd_cgroups/"))
    assert in_site == package, set(in_site) ^ set(package)
    for rel in package:
        with open(os.path.join(CHECKOUT, rel), "rb") as a, open(os.path.join(str(root), SITE[1:], rel), "rb") as b:
            assert a.read() == b.read(), "%s differs from the source tree" % rel
    others = [p for p in shipped if not p.startswith(SITE[1:] + "/collectd_cgroups")]
    assert sorted(others) == sorted(["etc/collectd/collectd-cgroups.conf", "usr/bin/collectd-cgroups",
                              "usr/share/doc/collectd-cgroups/README.rst.gz",
                              "usr/share/doc/collectd-cgroups/changelog.gz",
                              "usr/share/doc/collectd-cgroups/copyright",
                              "usr/share/man/man1/collectd-cgroups.1.gz",
                              "usr/share/collectd-cgroups/grafana/collectd-cgroups.json"]), others
    assert not [p for p in shipped if p.endswith((".pyc", ".pyo")) or "ccg_lab" in p or p.startswith("tests")]
    for source, installed_as in (("conf/collectd-cgroups.conf", "etc/collectd/collectd-cgroups.conf"),
                                 ("conf/grafana/collectd-cgroups.json",
                                  "usr/share/collectd-cgroups/grafana/collectd-cgroups.json")):
        with open(os.path.join(CHECKOUT, source), "rb") as a, open(os.path.join(str(root), installed_as), "rb") as b:
            assert a.read() == b.read(), installed_as
    control = tmp_path / "control"
    run(["dpkg-deb", "-e", built.current, str(control)])
    assert (control / "conffiles").read_text().split() == ["/etc/collectd/collectd-cgroups.conf"]
    for name in shipped + [str(p) for p in control.iterdir()]:
        path = os.path.join(str(root), name) if not os.path.isabs(name) else name
        if os.path.isfile(path) and not path.endswith(".gz"):
            with open(path, "rb") as f:
                assert b"process_api" not in f.read(), "%s names process_api" % name
    man = run(["man", "-l", "-P", "cat", os.path.join(str(root), "usr/share/man/man1/collectd-cgroups.1.gz")]).stdout
    for text in ("--pid", "--exited", "--config", "collectd-cgroups top", "/etc/collectd/collectd-cgroups.conf",
                 "collectd.conf"):
        assert text in man, "the manual page lacks %r" % text


# -- install, upgrade, remove, purge ---------------------------------------------------------------------------

class Machine(object):
    def __init__(self, workdir):
        self.dropin = ETC + "/collectd.conf.d/00-ccg-test.conf"
        self.csvdir = os.path.join(str(workdir), "csv")
        self.log = os.path.join(str(workdir), "collectd.log")


@pytest.fixture(scope="module")
def debian_collectd(tmp_path_factory):
    """Debian's collectd package, installed for these tests if it was not (and purged again after them),
    with no collectd of its own running; the RRD files its configuration writes removed where there were
    none."""
    workdir = tmp_path_factory.mktemp("apt")
    had_collectd = installed("collectd")
    had_rrd = os.path.exists(RRD)
    if not had_collectd:
        apt_get(workdir, "install", "--no-install-recommends", "collectd")
        # collectd's own postinst starts it where services are allowed: these tests start their own.
        if daemon_pid():
            run([INIT, "stop"])
    yield
    if not had_collectd:
        apt_get(workdir, "purge", "collectd")
    if not had_rrd:
        shutil.rmtree(RRD, ignore_errors=True)


@pytest.fixture
def machine(debian_collectd, tmp_path):
    """The machine as the test found it, put back afterwards: no collectd-cgroups package, no collectd
    running, /etc/collectd unchanged.  Meanwhile the test's own log and csv writer, as an admin adds them
    (first in collectd.conf.d, so that the log sees what the other files do)."""
    assert package_state(PACKAGE) in ("not-installed", "unknown"), \
        "collectd-cgroups is installed on this machine (%s): this test installs and purges it" % package_state(PACKAGE)
    assert daemon_pid() is None, "a collectd runs (pid %s in %s): this test starts and stops its own" % (
        daemon_pid(), PIDFILE)
    before = etc_checksums()
    m = Machine(tmp_path)
    with open(m.dropin, "w") as f:
        f.write('LoadPlugin logfile\n<Plugin logfile>\n  File "%s"\n  LogLevel info\n</Plugin>\n'
                'LoadPlugin csv\n<Plugin csv>\n  DataDir "%s"\n  StoreRates false\n</Plugin>\n'
                % (m.log, m.csvdir))
    yield m
    problems = []
    if daemon_pid():
        run([INIT, "stop"], check=False)
        pid = daemon_pid()
        if pid:
            problems.append("collectd (pid %d) did not stop" % pid)
    if package_state(PACKAGE) not in ("not-installed", "unknown"):
        apt_get(tmp_path, "purge", PACKAGE)
    for path in (m.dropin, LINK + ".disabled", DANGLING):
        if os.path.lexists(path):
            os.unlink(path)
    after = etc_checksums()
    if after != before:
        problems.append("/etc/collectd changed: %s" % sorted(set(after.items()) ^ set(before.items())))
    assert not problems, problems


def test_install_upgrade_remove_purge(built, machine, tmp_path):
    csvdir = machine.csvdir
    cid = secrets.token_hex(32)
    with CgroupTree("ccg-deb-%s/docker" % secrets.token_hex(4)) as tree:
        container = tree.container(cid)
        proc = container.spawn(cpu_seconds=0.3)
        proc.wait_ready()
        pid = container.pids()[0]
        instance = "container-docker-%s" % cid[:12]

        # collectd runs (stock configuration, no plugin) before the package comes.
        run([INIT, "start"])
        first = wait_until(daemon_pid, 30, what="collectd started by its init script")
        wait_until(lambda: glob.glob(csvdir + "/*/load/load-*"), 3 * DEBIAN_INTERVAL,
                   what="collectd's own load values")
        assert not glob.glob(csvdir + "/*/container-*")

        # Install (the previous version first): enabled, collectd restarted by postinst, the container
        # reported within two intervals.
        apt_started = time.monotonic()
        apt_get(tmp_path, "install", built.previous)
        installed_at = time.monotonic()
        assert os.path.islink(LINK) and os.readlink(LINK) == "../collectd-cgroups.conf", LINK
        second = wait_until(daemon_pid, 30, what="collectd restarted by the package")
        assert second != first, "postinst did not restart the running collectd"
        cpu = wait_until(lambda: csv_value(csvdir, instance, "cpu-total"), 2 * DEBIAN_INTERVAL,
                         what="%s/cpu-total in the csv files" % instance)
        seen_after = time.monotonic() - installed_at
        ticks = proc_cpu_ticks(pid)
        print("installed: apt-get took %.1f s; %s reported %.1f s after it returned; cpu-total %.2f s, its "
              "process %d ticks" % (installed_at - apt_started, instance, seen_after, cpu / 100.0, ticks))
        assert abs(cpu / 100.0 - ticks / float(CLK_TCK)) <= 0.02 + 1.0 / CLK_TCK, (cpu, ticks)
        assert_clean_start(machine, "installed")
        with open(machine.log) as f:
            log = f.read()
        assert "collectd_cgroups: instance collectd_cgroups ready; cgroup layout:" in log, log
        assert re.search(r"collectd_cgroups: [1-9][0-9]* container\(s\) found", log), log
        configuration = run(["grep", "-rh", "ModulePath", ETC + "/"], check=False).stdout.splitlines()
        assert all(line.strip().startswith("#") for line in configuration), configuration

        # The admin edits the block; the upgrade (whose block changed too) keeps the edit and restarts.
        with open(BLOCK) as f:
            text = f.read()
        edited = text.replace('<Module "collectd_cgroups">',
                              '<Module "collectd_cgroups">\n    InstanceFormat "edited-{short_id}"')
        assert edited != text
        with open(BLOCK, "w") as f:
            f.write(edited)
        apt_get(tmp_path, "install", built.current)
        assert run(["dpkg-query", "-W", "-f=${Version}", PACKAGE]).stdout == built.version
        with open(BLOCK) as f:
            assert f.read() == edited, "the upgrade lost the admin's edit"
        assert os.path.exists(BLOCK + ".dpkg-dist"), "the new block was not left beside the edited one"
        assert os.readlink(LINK) == "../collectd-cgroups.conf"
        third = wait_until(daemon_pid, 30, what="collectd restarted by the upgrade")
        assert third != second
        wait_until(lambda: csv_value(csvdir, "container-edited-%s" % cid[:12], "cpu-total"), 2 * DEBIAN_INTERVAL,
                   what="the edited block's InstanceFormat in the csv files")

        # The command, as root, from the package; its bytecode is Debian's (removed with the package).
        # It reads collectd's configuration (the edited block's InstanceFormat): the same name as collectd's.
        cli = run(["/usr/bin/collectd-cgroups", "--pid", str(pid)], cwd="/")
        assert "edited-%s" % cid[:12] in cli.stdout, cli.stdout
        assert "options from /etc/collectd/collectd.conf" in cli.stderr, cli.stderr
        version = run(["/usr/bin/collectd-cgroups", "--version"]).stdout.split()
        assert version == ["collectd-cgroups", built.version], version
        files = [p for p in run(["dpkg", "-L", PACKAGE]).stdout.splitlines() if p not in ("/.", "")]
        pyc = glob.glob(SITE + "/collectd_cgroups/**/*.pyc", recursive=True)
        assert pyc, "py3compile made no bytecode"

        # Remove: the link goes, collectd is restarted without the plugin and keeps running.
        apt_get(tmp_path, "remove", PACKAGE)
        assert not os.path.lexists(LINK)
        assert os.path.exists(BLOCK), "remove keeps the conffile"
        fourth = wait_until(daemon_pid, 30, what="collectd restarted by the removal")
        assert fourth != third
        assert_clean_start(machine, "after remove")
        time.sleep(2)
        children = collectd_children(fourth)
        assert children, "collectd is not running under collectdmon after remove"
        with open(machine.log) as f:
            log = f.read()
        assert "Error importing module" not in log and "Traceback" not in log, log

        # A reinstall after remove enables it again (and restarts); then remove and purge.
        apt_get(tmp_path, "install", built.current)
        assert os.readlink(LINK) == "../collectd-cgroups.conf"
        apt_get(tmp_path, "purge", PACKAGE)
        assert package_state(PACKAGE) in ("not-installed", "unknown")
        shared_dir = lambda p: os.path.isdir(p) and run(["dpkg", "-S", p], check=False).returncode == 0
        left = [p for p in files if os.path.lexists(p) and not shared_dir(p)]
        assert not left, "purge left files of the package: %s" % left
        for path in (BLOCK, BLOCK + ".dpkg-dist", LINK, STATE, SITE + "/collectd_cgroups", "/run/collectd-cgroups"):
            assert not os.path.lexists(path), path
        assert_clean_start(machine, "after purge")
        run([INIT, "restart"])
        fifth = wait_until(daemon_pid, 30, what="collectd after purge")
        time.sleep(2)
        assert collectd_children(fifth), "collectd does not run after purge"

        # The control: the check above fails where the block stays after the module went (the 0.1.0 way:
        # the example copied into collectd.conf.d by hand).
        shutil.copy(os.path.join(CHECKOUT, "conf", "collectd-cgroups.conf"), DANGLING)
        try:
            rc, out = collectd_test_mode(machine)
        finally:
            os.unlink(DANGLING)
        assert rc != 0 and "collectd_cgroups" in out, "a dangling Import went unnoticed:\n" + out
        run([INIT, "stop"])
        assert daemon_pid() is None


def test_an_own_copy_of_the_block_is_set_aside_on_remove(built, machine, tmp_path):
    """0.1.0 shipped the block only as an example that users copied into collectd.conf.d themselves; that
    copy, edited, is kept while the package is there, set aside on remove (collectd then starts) and put
    back by a reinstall."""
    with open(os.path.join(CHECKOUT, "conf", "collectd-cgroups.conf")) as f:
        own = f.read().replace("# PerCPU false", "PerCPU true")
    with open(LINK, "w") as f:
        f.write(own)
    apt_get(tmp_path, "install", built.current)
    assert not os.path.islink(LINK) and open(LINK).read() == own, "the admin's own copy was replaced"
    assert_clean_start(machine, "with the admin's own copy")
    apt_get(tmp_path, "remove", PACKAGE)
    assert not os.path.exists(LINK) and open(LINK + ".disabled").read() == own
    assert_clean_start(machine, "after remove")
    apt_get(tmp_path, "install", built.current)
    assert open(LINK).read() == own and not os.path.exists(LINK + ".disabled")
    apt_get(tmp_path, "purge", PACKAGE)
    assert open(LINK + ".disabled").read() == own, "purge must leave the admin's own file (set aside)"
    assert_clean_start(machine, "after purge")
    os.unlink(LINK + ".disabled")
