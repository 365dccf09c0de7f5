#!/bin/sh
# Build the Debian package the Debian way and check it:
#   packaging/build-deb.sh [OUTDIR]        (default build/deb; `make deb` runs it)
# A native source tree of the product alone (setup.cfg, pyproject.toml, collectd_cgroups/, the block and the
# Grafana dashboard of conf/, README.rst, LICENSE, and packaging/debian/ as debian/) is staged under
# OUTDIR/src, built with dpkg-buildpackage
# (debhelper + dh-python/pybuild), and checked with lintian, which must report no error and no warning.
# Missing build dependencies (from debian/control, with apt-get build-dep) and lintian are installed when run
# as root.  Prints the path of the .deb.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
out=${1:-$src/build/deb}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$src/collectd_cgroups/__init__.py")
changelog_version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
if [ "$version" != "$changelog_version" ]; then
    echo "build-deb: collectd_cgroups.__version__ is $version but packaging/debian/changelog says $changelog_version" >&2
    exit 1
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
tree=$out/src/collectd-cgroups-$version
rm -rf "$out/src"
mkdir -p "$tree/conf/grafana"
(cd "$src" && cp -p setup.cfg pyproject.toml README.rst LICENSE "$tree/")
cp -p "$src/conf/collectd-cgroups.conf" "$tree/conf/"
cp -p "$src/conf/grafana/collectd-cgroups.json" "$tree/conf/grafana/"
# The package's .py files only: no bytecode, no lab (ccg_lab/), no tests.
(cd "$src" && find collectd_cgroups -name '*.py' ! -path '*/__pycache__/*') | while read -r f; do
    mkdir -p "$tree/$(dirname "$f")"
    cp -p "$src/$f" "$tree/$f"
done
cp -rp "$here/debian" "$tree/debian"

as_root() {     # what is missing, the apt-get command that installs it
    if [ "$(id -u)" != 0 ]; then
        echo "build-deb: $1 missing; run as root (make deb) to install it" >&2
        exit 1
    fi
    echo "build-deb: installing $1" >&2
    shift
    DEBIAN_FRONTEND=noninteractive apt-get "$@" >/dev/null
}
if ! (cd "$tree" && dpkg-checkbuilddeps >/dev/null 2>&1); then
    as_root "build dependencies" update -qq
    as_root "build dependencies" build-dep -y -qq --no-install-recommends "$tree"
fi
command -v lintian >/dev/null || as_root lintian install -y -qq --no-install-recommends lintian

# Debian's own tools and interpreters only (as a build daemon has them), whatever python3 is first on PATH.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
(cd "$tree" && dpkg-buildpackage -us -uc >"$out/build.log" 2>&1) || {
    tail -40 "$out/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
    exit 1
}
changes=$out/src/collectd-cgroups_${version}_amd64.changes
[ -e "$changes" ] || changes=$(ls "$out"/src/collectd-cgroups_"$version"_*.changes)
# Every tag down to informational ones is printed; errors and warnings fail the build.
lintian --info --display-info --fail-on error,warning "$changes" >"$out/lintian.txt" 2>&1 || {
    cat "$out/lintian.txt" >&2
    echo "build-deb: lintian found errors or warnings" >&2
    exit 1
}
cat "$out/lintian.txt" >&2
deb=$out/collectd-cgroups_${version}_all.deb
cp -p "$out/src/collectd-cgroups_${version}_all.deb" "$deb"
echo "$deb"
