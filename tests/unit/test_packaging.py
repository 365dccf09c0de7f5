"""The shipped artefacts: the wheel, the Debian package, the console script, the drop-in block.

The wheel and the .deb ship exactly the ``collectd_cgroups`` package of the source tree (every .py file,
byte for byte), plus their console script and metadata: no lab (``ccg_lab/``), no tests, and no shipped
file names ``process_api`` (this machine's cgroup that nothing may touch: only lab and test code may
name it).  Both are built here without root and without the network (the wheel from a copy of the
checkout, with the venv's setuptools and wheel: ``pip wheel --no-build-isolation --no-index``).
"""

import configparser
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.support import CHECKOUT

PACKAGE = "collectd_cgroups"
FORBIDDEN = b"process_api"
CONFIG = configparser.ConfigParser()
CONFIG.read(os.path.join(CHECKOUT, "setup.cfg"))
VERSION = CONFIG["metadata"]["version"]
DIST_INFO = "collectd_cgroups-%s.dist-info" % VERSION
#: what a wheel carries besides the package
DIST_INFO_FILES = {"METADATA", "WHEEL", "entry_points.txt", "top_level.txt", "RECORD"}
#: what the .deb carries besides the package
DEB_EXTRAS = {"usr/bin/collectd-cgroups", "usr/share/doc/collectd-cgroups/README.rst",
              "usr/share/doc/collectd-cgroups/examples/collectd-cgroups.conf"}
DEB_SITE = "usr/lib/python3/dist-packages"


def package_files():
    """The package in the source tree, as paths relative to the checkout (``collectd_cgroups/...``):
    every file but bytecode.  Only .py files may be there: setup.cfg ships no package data, so anything
    else would be left out of both artefacts."""
    found = set()
    for directory, subdirs, files in os.walk(os.path.join(CHECKOUT, PACKAGE)):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in files:
            if not name.endswith((".pyc", ".pyo")):
                found.add(os.path.relpath(os.path.join(directory, name), CHECKOUT))
    not_py = sorted(f for f in found if not f.endswith(".py"))
    assert not not_py, "files in the package that neither artefact ships: %s" % not_py
    assert "%s/__init__.py" % PACKAGE in found and "%s/plugin.py" % PACKAGE in found, found
    return found


def source_bytes(rel):
    with open(os.path.join(CHECKOUT, rel), "rb") as f:
        return f.read()


def naming_forbidden(contents):
    """{name: bytes} -> the names whose contents contain ``process_api``."""
    return sorted(name for name, data in contents.items() if FORBIDDEN in data)


# -- the wheel ------------------------------------------------------------------------------------------------

def _copy_ignore(directory, names):
    """The checkout as a clean clone would have it, lab and tests included (so that leaving them out of
    the wheel is setup.cfg's doing): no VCS, venv, build output or caches."""
    skip = {".git", ".venv", "build", "dist", ".cache", "__pycache__", ".pytest_cache"}
    return [n for n in names if n in skip or n.endswith((".egg-info", ".pyc", ".deb", ".whl"))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("wheel-src") / "checkout")
    out = str(tmp_path_factory.mktemp("wheel-out"))
    shutil.copytree(CHECKOUT, src, ignore=_copy_ignore, symlinks=True)
    assert os.path.isdir(os.path.join(src, "ccg_lab")) and os.path.isdir(os.path.join(src, "tests"))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", PIP_NO_INPUT="1")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", out, src], capture_output=True, text=True, env=env, cwd=out, timeout=300)
    assert res.returncode == 0, "pip wheel failed (the venv needs setuptools and wheel: make venv):\n%s%s" % (
        res.stdout, res.stderr)
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
    assert wheels == ["collectd_cgroups-%s-py3-none-any.whl" % VERSION], wheels
    with zipfile.ZipFile(os.path.join(out, wheels[0])) as z:
        return {name: z.read(name) for name in z.namelist() if not name.endswith("/")}


def test_wheel_ships_exactly_the_package_and_its_metadata(wheel):
    expected = package_files() | {"%s/%s" % (DIST_INFO, f) for f in DIST_INFO_FILES}
    shipped = set(wheel)
    assert not shipped - expected, "the wheel ships more: %s" % sorted(shipped - expected)
    assert not expected - shipped, "the wheel lacks: %s" % sorted(expected - shipped)
    assert not [n for n in shipped if n.split("/")[0] in ("ccg_lab", "tests")]
    for rel in package_files():
        assert wheel[rel] == source_bytes(rel), "%s differs from the source tree" % rel
    assert wheel["%s/top_level.txt" % DIST_INFO].decode().split() == [PACKAGE]
    entry_points = wheel["%s/entry_points.txt" % DIST_INFO].decode()
    assert "[console_scripts]" in entry_points
    assert "collectd-cgroups = collectd_cgroups.__main__:main" in entry_points


def test_wheel_names_no_process_api(wheel):
    assert not naming_forbidden(wheel), "shipped files that name process_api: %s" % naming_forbidden(wheel)


# -- the Debian package ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb (Debian's dpkg) is not installed")
    tmp = tmp_path_factory.mktemp("deb")
    out = subprocess.run([os.path.join(CHECKOUT, "packaging", "build-deb.sh"), str(tmp)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip()
    root = tmp / "root"
    subprocess.run(["dpkg-deb", "-x", path, str(root)], check=True)
    files = {}
    for directory, _, names in os.walk(str(root)):
        for name in names:
            full = os.path.join(directory, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, str(root))] = f.read()
    control = subprocess.run(["dpkg-deb", "-f", path], capture_output=True, check=True).stdout
    return path, root, files, control


def test_debian_package_installs_an_importable_module(deb, tmp_path):
    path, root, _, _ = deb
    assert os.path.basename(path).startswith("collectd-cgroups_") and path.endswith("_all.deb")
    fields = subprocess.run(["dpkg-deb", "-f", path, "Package", "Depends"], capture_output=True, text=True).stdout
    assert "Package: collectd-cgroups" in fields and "collectd-core" in fields
    dist = root / DEB_SITE
    assert (dist / "collectd_cgroups/plugin.py").is_file()
    assert (dist / "collectd_cgroups/readers/memory.py").is_file()
    assert (root / "usr/share/doc/collectd-cgroups/examples/collectd-cgroups.conf").is_file()
    # Debian's interpreter (the one collectd embeds) imports it from the package's location.
    env = dict(os.environ, PYTHONPATH=str(dist))
    run = subprocess.run(["/usr/bin/python3", "-c",
                          "import collectd_cgroups.__main__ as m, sys; sys.exit(m.main(['--layout']))"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert run.returncode == 0, run.stderr
    assert "cgroup layout:" in run.stdout
    script = (root / "usr/bin/collectd-cgroups").read_text()
    assert script.startswith("#!/usr/bin/python3")


def test_debian_package_ships_exactly_the_package_script_and_docs(deb):
    _, _, files, _ = deb
    expected = {"%s/%s" % (DEB_SITE, rel) for rel in package_files()} | DEB_EXTRAS
    shipped = set(files)
    assert not shipped - expected, "the .deb ships more: %s" % sorted(shipped - expected)
    assert not expected - shipped, "the .deb lacks: %s" % sorted(expected - shipped)
    for rel in package_files():
        assert files["%s/%s" % (DEB_SITE, rel)] == source_bytes(rel), "%s differs from the source tree" % rel


def test_debian_package_names_no_process_api(deb):
    _, _, files, control = deb
    bad = naming_forbidden(dict(files, DEBIAN_control=control))
    assert not bad, "shipped files that name process_api: %s" % bad


# -- the console script and the drop-in block ---------------------------------------------------------------

def test_console_script_runs_one_pass():
    script = shutil.which("collectd-cgroups", path=os.path.dirname(sys.executable))
    assert script, "pip install . must provide the collectd-cgroups console script"
    out = subprocess.run([script, "--layout"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("cgroup layout: ")


def test_drop_in_block_names_the_module_and_documents_every_option():
    block = open(os.path.join(CHECKOUT, "conf", "collectd-cgroups.conf")).read()
    readme = open(os.path.join(CHECKOUT, "README.rst")).read()
    assert 'Import "collectd_cgroups.plugin"' in block
    assert '<Module "collectd_cgroups">' in block
    from collectd_cgroups import config
    for option in config.OPTIONS:
        assert "# %s " % option in block, "conf/collectd-cgroups.conf lacks option %s" % option
        assert "\n%s " % option in readme, "README.rst's option table lacks %s" % option
