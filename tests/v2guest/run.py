#!/usr/bin/env python3
"""Boot the v2 guest, run one command in it, stream its output, return its exit status.

    python3 tests/v2guest/run.py                      the in-guest suite (every guest_*.py here)
    python3 tests/v2guest/run.py -- -k memory -x      ... with these pytest arguments
    python3 tests/v2guest/run.py --shell 'cat /proc/self/mountinfo'
    python3 tests/v2guest/run.py --report DIR ...     keep the report folder (default: a temporary one)
    python3 tests/v2guest/run.py --capture-fixture    rewrite tests/fixtures/v2-guest-captured

The guest (see build.py and init.sh) is qemu with TCG (KVM does not run stock kernels here), no
network device (``-nodefaults -nic none``), a serial console on qemu's stdout (the command's
output comes back that way, line by line), two 9p shares and one disk:

- ``hostroot``: the host's ``/``, read-only (``readonly=on``); the guest puts a tmpfs overlay on
  top and chroots into it, so the checkout, its virtualenv, Debian's Python and collectd are there
  at the host's paths and anything written lands in guest memory.
- ``report``: the report folder, the one place the guest writes to on the host.  It carries
  ``run.sh`` (the command) in and ``exit-status`` (and whatever the command writes to /report)
  back.
- a scratch disk ``scratch.img`` (sparse, in the report folder, removed after the run) for block
  I/O tests.

qemu is killed by its PID when the run ends, on failure and on timeout too.  Only the standard
library.
"""

import argparse
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if not __package__:     # run as a script (python3 tests/v2guest/run.py): `tests` imports from the checkout's root
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from tests.v2guest import build  # noqa: E402

CHECKOUT = build.CHECKOUT
GUEST_PYTHON = os.path.join(CHECKOUT, ".venv", "bin", "python")

#: Kernel command line: serial console, cgroup v1 off for every controller, exit on panic.
CMDLINE = "console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=3"
MEMORY_MIB = 1536
CPUS = 2
SCRATCH_MIB = 256
DEFAULT_TIMEOUT = 900
TEST_TRACEBACK_AFTER = 240

#: In-guest suite files, in the order they run.
SUITE = ("guest_v2_kernel.py", "guest_collectd.py", "guest_capture.py")


class GuestError(RuntimeError):
    pass


class Result(object):
    def __init__(self, status, output, report, seconds, guest):
        self.status = status        # exit status of the command; None if it never finished
        self.output = output        # everything the serial console printed (text)
        self.report = report        # the report folder
        self.seconds = seconds      # qemu's run time
        self.guest = guest          # build.Guest

    def __repr__(self):
        return "Result(status=%s, %.1fs, report=%s)" % (self.status, self.seconds, self.report)


def qemu_argv(guest, report, scratch):
    return [
        build.QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-machine", "pc,accel=tcg", "-smp", str(CPUS), "-m", str(MEMORY_MIB),
        "-kernel", guest.kernel, "-initrd", guest.initrd, "-append", CMDLINE,
        "-nic", "none",
        "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
        "-monitor", "none",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", "local,path=%s,mount_tag=report,security_model=none,multidevs=remap" % report,
        "-drive", "file=%s,format=raw,if=virtio,cache=unsafe" % scratch,
        "-device", "virtio-rng-pci",
    ]


def script(argv, cwd=CHECKOUT, env=None):
    """run.sh for the guest: ``argv`` in ``cwd`` with a plain environment."""
    environment = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
        "CCG_V2GUEST": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
    }
    environment.update(env or {})
    lines = ["# written by tests/v2guest/run.py", "cd %s || exit 111" % shlex.quote(cwd)]
    lines += ["export %s=%s" % (k, shlex.quote(v)) for k, v in sorted(environment.items())]
    lines.append("exec %s" % " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def suite_argv(pytest_args=(), files=SUITE):
    """The in-guest pytest command (its JUnit report goes to /report/junit.xml).  Without a test
    path among ``pytest_args`` (e.g. only ``-k memory``) the suite's files are added."""
    args = list(pytest_args)
    if not any(a.endswith(".py") or "::" in a or a.startswith("tests/") for a in args):
        args += [os.path.relpath(os.path.join(HERE, f), CHECKOUT) for f in files]
    # faulthandler_timeout: a test (with its fixtures) still running after that many seconds has every
    # thread's traceback printed on the console, so that a guest that hangs says where.
    return [GUEST_PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rA", "--color=no",
            "--junitxml=/report/junit.xml", "-o", "junit_family=xunit2",
            "-o", "faulthandler_timeout=%d" % TEST_TRACEBACK_AFTER] + args


def _die_with_parent():
    """In the qemu child before exec: SIGKILL it when the runner dies (PR_SET_PDEATHSIG), so a
    killed test run never leaves a guest behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG = 1
    except Exception:
        pass


def _terminate(proc):
    """SIGTERM to qemu's PID, SIGKILL if it is still there after 5 s; reaps it."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def run(argv, report, timeout=DEFAULT_TIMEOUT, stream=None, log=print, env=None):
    """Boot the guest, run ``argv`` (a list) there, return a :class:`Result`.

    ``report``: an existing, empty folder (shared with the guest as /report).  ``stream(line)``
    gets each console line as it arrives.  Raises build.BuildError when the guest cannot be built,
    GuestError when qemu cannot start; a command that does not finish within ``timeout`` seconds
    gives ``status`` None (qemu killed)."""
    guest = build.build(log=log)
    report = os.path.abspath(report)
    if os.listdir(report):
        raise GuestError("report folder %s is not empty" % report)
    with open(os.path.join(report, "run.sh"), "w") as f:
        f.write(script(argv, env=env))
    scratch = os.path.join(report, "scratch.img")
    with open(scratch, "wb") as f:
        f.truncate(SCRATCH_MIB << 20)
    lines, pending = [], b""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(qemu_argv(guest, report, scratch), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
    except OSError as e:
        os.unlink(scratch)
        raise GuestError("cannot start %s: %s" % (build.QEMU, e))
    timed_out = False
    try:
        fd = proc.stdout.fileno()
        deadline = start + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], min(remaining, 5.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                # the serial line ends in \r\n; a progress line rewritten with \r keeps its last state
                line = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
                lines.append(line)
                if stream is not None:
                    stream(line)
        if pending:
            lines.append(pending.decode("utf-8", "replace"))
            if stream is not None:
                stream(lines[-1])
    finally:
        _terminate(proc)
        proc.stdout.close()
        try:
            os.unlink(scratch)
        except FileNotFoundError:
            pass
    seconds = time.monotonic() - start
    output = "\n".join(lines) + "\n"
    with open(os.path.join(report, "console.log"), "w") as f:
        f.write(output)
    status = None
    if timed_out:
        msg = "v2guest: no result within %ss: qemu (pid %d) killed" % (timeout, proc.pid)
        output += msg + "\n"
        log(msg)
    else:
        try:
            with open(os.path.join(report, "exit-status")) as f:
                status = int(f.read().strip())
        except (OSError, ValueError):
            status = None
    return Result(status, output, report, seconds, guest)


def run_suite(report, pytest_args=(), **kw):
    """The in-guest suite; ``Result.status`` is pytest's exit status.  ``Result.canary`` is a path
    in the checkout that the guest writes to (in its overlay): it must not exist on the host."""
    canary = os.path.join(CHECKOUT, ".v2guest-canary-%s" % os.urandom(6).hex())
    env = dict(kw.pop("env", None) or {}, CCG_V2GUEST_CANARY=canary)
    result = run(suite_argv(pytest_args), report, env=env, **kw)
    result.canary = canary
    return result


FIXTURE = os.path.join(CHECKOUT, "tests", "fixtures", "v2-guest-captured")

FIXTURE_README = """\
# v2-guest-captured: real cgroup v2 files, captured in the v2 guest

Not hand-written: `python3 tests/v2guest/run.py --capture-fixture` booted the v2 guest
(tests/v2guest/README.md; Debian's `{package}` {version}, kernel {kernel}, booted with
`cgroup_no_v1=all`, cgroup2 mounted with `nsdelegate,memory_recursiveprot`, every controller
enabled), built the world of tests/v2guest/guest_world.py and copied its four containers with
tests/support/capture.py (every readable file of each cgroup directory, the cgroup lines of mountinfo,
/proc/cgroups, /proc/<pid>/cgroup of two of their processes, Docker's config.v2.json) plus the
`uevent` of the block device in their io.stat (it names the device).  CAPTURE.json records what
the processes and the test did.

| cgroup | what it is | expected plugin_instance |
| --- | --- | --- |
| `{box}` | user `Match` (`{match}`); `memory.max` 96 MiB; a workload with 2 children, an I/O worker (O_DIRECT and buffered+fsync writes on `{disk}`, {disk_dev}), a hog OOM-killed | `cgroup-box` |
| `{docker}` | Docker, systemd cgroup driver; `cpu.max` half a core (throttled), `pids.max` 32, `memory.high` 256 MiB | `docker-web` |
| `{podman}` | podman with crun's layout: the payload runs in the scope's child `container` (not captured: the plugin reads the scope) | `{podman_instance}` |
| `{bare}` | `Match`ed, under a parent that enables no controller: cpu.stat usage figures and *.pressure only | `cgroup-plain` |

tests/unit/test_v2_guest_fixture.py runs the plugin over this tree (`--root`) and checks it against the
files and against the field sets of the hand-written tests/fixtures/v2-pure; tests/e2e/test_v2_guest.py
compares each fresh capture of `make test` with this one.  Refresh it with the command above when
the Debian kernel moves to another series.
"""


def capture_fixture(log=print):
    """Boot the guest, capture the world (guest_capture.py) and make it tests/fixtures/v2-guest-captured."""
    report = tempfile.mkdtemp(prefix="ccg-v2guest-capture-")
    try:
        result = run_suite(report, pytest_args=[os.path.relpath(os.path.join(HERE, "guest_capture.py"), CHECKOUT)],
                           stream=lambda line: print(line, flush=True), log=log)
        if result.status != 0:
            raise GuestError("the capture failed (status %s)" % result.status)
        captured = os.path.join(report, "captured")
        with open(os.path.join(captured, "CAPTURE.json")) as f:
            facts = json.load(f)
        with open(os.path.join(captured, "README.md"), "w") as f:
            f.write(FIXTURE_README.format(package=result.guest.package, version=result.guest.version,
                                          kernel=facts["kernel"], box=facts["box"]["cgroup"],
                                          match=facts["box"]["match"], disk=facts["box"]["disk"],
                                          disk_dev=facts["box"]["disk_dev"], docker=facts["docker"]["cgroup"],
                                          podman=facts["podman"]["cgroup"], podman_instance=facts["podman"]["instance"],
                                          bare=facts["bare"]["cgroup"]))
        if os.path.isdir(FIXTURE):
            shutil.rmtree(FIXTURE)
        shutil.copytree(captured, FIXTURE, symlinks=True)
        log("v2guest: %s written" % FIXTURE)
    finally:
        shutil.rmtree(report, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", help="report folder to use (created; must be empty); default: a temporary one")
    p.add_argument("--shell", help="run this shell command instead of the suite")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    p.add_argument("--build-only", action="store_true", help="build (or find) the guest and exit")
    p.add_argument("--capture-fixture", action="store_true",
                   help="capture the in-guest world into tests/fixtures/v2-guest-captured")
    p.add_argument("pytest_args", nargs="*", help="pytest arguments for the in-guest suite (after --)")
    args = p.parse_args(argv)
    if args.build_only:
        return build.main()
    if args.capture_fixture:
        try:
            capture_fixture(log=lambda msg: print(msg, file=sys.stderr, flush=True))
        except (build.BuildError, GuestError) as e:
            print("v2guest: %s" % e, file=sys.stderr)
            return 2
        return 0
    keep = args.report is not None
    report = os.path.abspath(args.report) if keep else tempfile.mkdtemp(prefix="ccg-v2guest-")
    os.makedirs(report, exist_ok=True)
    try:
        runner = (lambda *a, **kw: run(["/bin/sh", "-c", args.shell], *a, **kw)) if args.shell else \
            (lambda *a, **kw: run_suite(*a, pytest_args=args.pytest_args, **kw))
        result = runner(report, timeout=args.timeout, stream=lambda line: print(line, flush=True),
                     log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (build.BuildError, GuestError) as e:
        print("v2guest: %s" % e, file=sys.stderr)
        return 2
    finally:
        if not keep:
            shutil.rmtree(report, ignore_errors=True)
    print("v2guest: exit status %s after %.1f s%s" % (result.status, result.seconds,
                                                      "; report in %s" % report if keep else ""), file=sys.stderr)
    return 1 if result.status is None else result.status


if __name__ == "__main__":
    sys.exit(main())
