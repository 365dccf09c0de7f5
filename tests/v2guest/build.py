#!/usr/bin/env python3
"""Build (or find in the cache) the v2 guest: a stock Debian kernel and a busybox initramfs.

    python3 tests/v2guest/build.py          build if needed, print the kernel and initramfs paths

Everything comes from Debian packages: the kernel package that ``linux-image-amd64`` depends on
is fetched with ``apt-get download`` and unpacked into a temporary folder of the cache (nothing
goes into the host's /boot, nothing is installed); ``busybox-static`` provides the initramfs'
only program.  The initramfs holds /bin/busybox, /init (``init.sh`` beside this file), the
kernel modules the guest needs with their dependencies (read from each module's ``.modinfo``),
in load order, and /dev/console.  It is written in the cpio "newc" format by this file (no
cpio, kmod or depmod needed).

The result lives in ``<checkout>/.cache/v2guest/<kernel version>_<package version>_<hash>/``
(``$CCG_V2GUEST_CACHE`` overrides the folder), where the hash covers init.sh, the module list,
busybox and this file: the next run reuses it; older builds are removed when a new one is made.
The package lists are refreshed with ``apt-get update`` when apt does not know the kernel
package (a bare machine).  Needs root (apt) only when something has to be downloaded.

Only the standard library: it must run on a bare machine.
"""

import fcntl
import hashlib
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))
INIT_SCRIPT = os.path.join(HERE, "init.sh")
BUSYBOX = "/bin/busybox"
QEMU = "qemu-system-x86_64"
META_PACKAGE = "linux-image-amd64"

#: Modules the guest loads (dependencies are added): virtio PCI transport, the scratch disk,
#: the 9p shares, the overlay over the read-only host root, the scratch disk's file system,
#: crc32c for ext4 (normally requested through modprobe, which the guest does not have) and
#: an entropy source.
MODULES = ("virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay", "ext4", "crc32c_generic",
           "virtio_rng")

#: Directories of the initramfs.
DIRS = ("bin", "dev", "proc", "sys", "host", "report", "rw", "newroot", "lib", "lib/modules")

APT_HINT = ("install the v2 guest's tools with `make deps` (or: apt-get install -y --no-install-recommends "
            "qemu-system-x86 busybox-static)")


class BuildError(RuntimeError):
    pass


def cache_root():
    return os.environ.get("CCG_V2GUEST_CACHE") or os.path.join(CHECKOUT, ".cache", "v2guest")


class Guest(object):
    """A built guest: ``kernel`` and ``initrd`` paths, ``kver`` (uname -r), ``package``."""

    def __init__(self, directory, kver, package, version):
        self.dir = directory
        self.kver = kver
        self.package = package
        self.version = version
        self.kernel = os.path.join(directory, "vmlinuz")
        self.initrd = os.path.join(directory, "initrd.cpio")

    def __repr__(self):
        return "Guest(%s %s %s)" % (self.package, self.version, self.dir)


def _run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, **kw)


def check_host_tools():
    """Fail loudly (BuildError) when qemu or busybox is missing."""
    missing = []
    if shutil.which(QEMU) is None:
        missing.append("%s (package qemu-system-x86)" % QEMU)
    if not os.access(BUSYBOX, os.X_OK):
        missing.append("%s (package busybox-static)" % BUSYBOX)
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if missing:
        raise BuildError("the v2 guest needs %s; %s" % (", ".join(missing), APT_HINT))


# -- which kernel ------------------------------------------------------------------------------------------


def _apt_candidate(package):
    """Candidate version of a package per apt's lists, or None."""
    res = _run(["apt-cache", "policy", package])
    m = re.search(r"^\s*Candidate:\s*(\S+)", res.stdout, re.M)
    if m is None or m.group(1) == "(none)":
        return None
    return m.group(1)


def _kernel_dependency():
    """(package, kernel version) that linux-image-amd64 depends on, e.g.
    ('linux-image-6.1.0-57-amd64', '6.1.0-57-amd64')."""
    res = _run(["apt-cache", "depends", META_PACKAGE])
    for line in res.stdout.splitlines():
        m = re.match(r"^\s*Depends:\s*(linux-image-(\d\S*))\s*$", line)
        if m:
            return m.group(1), m.group(2)
    return None


def resolve_kernel(log=print):
    """(package, version, kver) of the kernel to boot; refreshes the package lists when needed."""
    for attempt in (1, 2):
        dep = _kernel_dependency() if _apt_candidate(META_PACKAGE) else None
        if dep is not None:
            version = _apt_candidate(dep[0])
            if version is not None:
                return dep[0], version, dep[1]
        if attempt == 1:
            log("v2guest: apt does not know %s yet: apt-get update" % META_PACKAGE)
            res = _run(["apt-get", "update", "-qq"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            if res.returncode != 0:
                raise BuildError("apt-get update failed (%d): %s" % (res.returncode, res.stderr.strip()))
    raise BuildError("apt knows no kernel package for %s (apt-cache depends %s)" % (META_PACKAGE, META_PACKAGE))


# -- kernel modules ---------------------------------------------------------------------------------------


def modinfo(data):
    """{key: [values]} from the ``.modinfo`` section of a kernel module (an ELF64 little-endian file)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError("not an ELF64 little-endian module")
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, off)
        sections.append((name, offset, size))
    _, str_off, str_size = sections[e_shstrndx]
    strtab = data[str_off:str_off + str_size]
    for name, offset, size in sections:
        if strtab[name:strtab.index(b"\0", name)] == b".modinfo":
            out = {}
            for entry in data[offset:offset + size].split(b"\0"):
                key, sep, value = entry.partition(b"=")
                if sep:
                    out.setdefault(key.decode(), []).append(value.decode())
            return out
    raise BuildError("no .modinfo section")


def module_index(modules_dir):
    """{module name (underscores): path} of every .ko below ``modules_dir``."""
    index = {}
    for dirpath, _, files in os.walk(modules_dir):
        for f in files:
            if f.endswith(".ko"):
                index[f[:-3].replace("-", "_")] = os.path.join(dirpath, f)
    return index


def load_order(wanted, index):
    """The modules to insmod, dependencies first: [(name, path)]."""
    order, state = [], {}

    def visit(name, chain):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise BuildError("module dependency cycle: %s" % " -> ".join(chain + [name]))
        if name not in index:
            raise BuildError("module %s not in the kernel package (needed by %s)" % (name, " -> ".join(chain) or "us"))
        state[name] = "visiting"
        with open(index[name], "rb") as f:
            info = modinfo(f.read())
        for dep in ",".join(info.get("depends", [])).split(","):
            if dep:
                visit(dep.replace("-", "_"), chain + [name])
        state[name] = "done"
        order.append((name, index[name]))

    for name in wanted:
        visit(name.replace("-", "_"), [])
    return order


# -- the initramfs ----------------------------------------------------------------------------------------


class Newc(object):
    """A cpio archive in the "newc" format the kernel unpacks (Documentation/driver-api/early-userspace)."""

    def __init__(self, out):
        self.out = out
        self.ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        header = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
        self.ino += 1
        self.out.write(header.encode() + name_b)
        self.out.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def directory(self, name, perm=0o755):
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name, data, perm=0o644):
        self._entry(name, stat.S_IFREG | perm, data)

    def chardev(self, name, major, minor, perm=0o600):
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def close(self):
        self._entry("TRAILER!!!", 0)


def write_initramfs(path, modules, busybox=BUSYBOX, init=INIT_SCRIPT):
    with open(busybox, "rb") as f:
        busybox_data = f.read()
    with open(init, "rb") as f:
        init_data = f.read()
    with open(path, "wb") as out:
        cpio = Newc(out)
        for d in DIRS:
            cpio.directory(d)
        cpio.chardev("dev/console", 5, 1)
        cpio.file("bin/busybox", busybox_data, 0o755)
        cpio.file("init", init_data, 0o755)
        names = []
        for name, ko in modules:
            with open(ko, "rb") as f:
                cpio.file("lib/modules/%s.ko" % name, f.read())
            names.append("%s.ko" % name)
        cpio.file("lib/modules/load-order", ("\n".join(names) + "\n").encode())
        cpio.close()


# -- building and caching ---------------------------------------------------------------------------------


def recipe_hash():
    """Hash of everything besides the kernel package that goes into a build."""
    h = hashlib.sha256()
    for path in (INIT_SCRIPT, os.path.abspath(__file__), BUSYBOX):
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    h.update(repr(MODULES).encode())
    return h.hexdigest()[:12]


def _download(package, version, workdir, log):
    res = _run(["apt-get", "download", "-o", "APT::Sandbox::User=root", "%s=%s" % (package, version)],
               cwd=workdir)
    debs = [f for f in os.listdir(workdir) if f.endswith(".deb")]
    if res.returncode != 0 or len(debs) != 1:
        raise BuildError("apt-get download %s=%s failed (%d): %s" % (package, version, res.returncode,
                                                                    (res.stderr or res.stdout).strip()))
    deb = os.path.join(workdir, debs[0])
    log("v2guest: downloaded %s (%.1f MB)" % (debs[0], os.path.getsize(deb) / 1e6))
    return deb


def _build(target, package, version, kver, log):
    parent = os.path.dirname(target)
    work = tempfile.mkdtemp(prefix=".build-", dir=parent)
    try:
        deb = _download(package, version, work, log)
        unpacked = os.path.join(work, "unpacked")
        res = _run(["dpkg-deb", "-x", deb, unpacked])
        if res.returncode != 0:
            raise BuildError("dpkg-deb -x %s failed: %s" % (deb, res.stderr.strip()))
        os.unlink(deb)
        vmlinuz = os.path.join(unpacked, "boot", "vmlinuz-" + kver)
        modules_dir = os.path.join(unpacked, "lib", "modules", kver)
        if not os.path.isfile(vmlinuz) or not os.path.isdir(modules_dir):
            raise BuildError("%s has no boot/vmlinuz-%s or lib/modules/%s" % (package, kver, kver))
        order = load_order(MODULES, module_index(modules_dir))
        out = os.path.join(work, "out")
        os.mkdir(out)
        shutil.copyfile(vmlinuz, os.path.join(out, "vmlinuz"))
        shutil.copyfile(os.path.join(unpacked, "boot", "config-" + kver), os.path.join(out, "config"))
        write_initramfs(os.path.join(out, "initrd.cpio"), order)
        with open(os.path.join(out, "BUILD"), "w") as f:
            f.write("package %s %s\nkernel %s\nrecipe %s\nmodules %s\n"
                    % (package, version, kver, recipe_hash(), " ".join(n for n, _ in order)))
        os.rename(out, target)
        log("v2guest: built %s (modules: %s)" % (target, " ".join(n for n, _ in order)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(log=print):
    """The guest, built if not cached.  Raises BuildError with what is missing."""
    check_host_tools()
    package, version, kver = resolve_kernel(log)
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    name = "%s_%s_%s" % (kver, re.sub(r"[^A-Za-z0-9.+~-]", "_", version), recipe_hash())
    target = os.path.join(root, name)
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # one build at a time
        if not os.path.isfile(os.path.join(target, "initrd.cpio")):
            _build(target, package, version, kver, log)
            for other in os.listdir(root):     # older builds (other kernel or recipe)
                if other != name and re.match(r"^\d[^/]*_[^/]*_[0-9a-f]{12}$", other):
                    shutil.rmtree(os.path.join(root, other), ignore_errors=True)
    return Guest(target, kver, package, version)


def main():
    try:
        guest = build()
    except BuildError as e:
        print("v2guest: %s" % e, file=sys.stderr)
        return 1
    print("kernel %s\ninitrd %s\nversion %s (%s %s)" % (guest.kernel, guest.initrd, guest.kver, guest.package,
                                                       guest.version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
