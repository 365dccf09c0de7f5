"""The shipped artefacts: the wheel, the Debian package's metadata, the console script, the drop-in block.

The wheel ships exactly the ``collectd_cgroups`` package of the source tree (every .py file, byte for
byte), plus its console script and metadata: no lab (``ccg_lab/``), no tests, and no shipped file names
``process_api`` (this machine's cgroup that nothing may touch: only lab and test code may name it).  It is
built here without root and without the network (from a copy of the checkout, with the venv's setuptools
and wheel: ``pip wheel --no-build-isolation --no-index``).  The Debian package is built, linted, installed
and purged in tests/e2e/test_debian_package.py (root: it needs its build dependencies and dpkg).
"""

import configparser
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from collectd_cgroups import __version__ as VERSION     # setup.cfg: version = attr: (checked below)
from tests.support import CHECKOUT

PACKAGE = "collectd_cgroups"
FORBIDDEN = b"process_api"
CONFIG = configparser.ConfigParser()
CONFIG.read(os.path.join(CHECKOUT, "setup.cfg"))
DIST_INFO = "collectd_cgroups-%s.dist-info" % VERSION
#: what a wheel carries besides the package
DIST_INFO_FILES = {"METADATA", "WHEEL", "entry_points.txt", "top_level.txt", "RECORD", "LICENSE"}


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


# -- the Debian package's metadata (the package itself: tests/e2e/test_debian_package.py) -----------------------

DEBIAN = os.path.join(CHECKOUT, "packaging", "debian")


def test_one_version_for_setup_cfg_the_package_and_the_changelog():
    assert CONFIG["metadata"]["version"] == "attr: collectd_cgroups.__version__"
    with open(os.path.join(DEBIAN, "changelog")) as f:
        top = f.readline()
    assert top.startswith("collectd-cgroups (%s) " % VERSION), top


def test_license_file_and_debian_copyright_agree():
    """setup.cfg says MIT; LICENSE carries its text; debian/copyright names it Expat (Debian's name for
    it) with the same text."""
    assert CONFIG["metadata"]["license"] == "MIT"
    with open(os.path.join(CHECKOUT, "LICENSE")) as f:
        license_text = f.read()
    with open(os.path.join(DEBIAN, "copyright")) as f:
        copyright_text = f.read()
    assert license_text.startswith("MIT License\n")
    assert "License: Expat\n" in copyright_text
    body = license_text.split("Permission is hereby granted", 1)[1]
    debian_body = copyright_text.split("Permission is hereby granted", 1)[1]
    words = lambda text: [w for w in text.split() if w != "."]
    assert words(debian_body) == words(body)


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
