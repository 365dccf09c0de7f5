#!/bin/sh
# Build collectd-cgroups_<version>_all.deb with dpkg-deb alone (no debhelper):
#   packaging/build-deb.sh [OUTDIR]
# The module goes to /usr/lib/python3/dist-packages, where Debian's python3
# and collectd's embedded interpreter find it without a ModulePath.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
out=${1:-$src/build}
version=$(sed -n 's/^version = //p' "$src/setup.cfg")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

pkgdir=$stage/usr/lib/python3/dist-packages/collectd_cgroups
mkdir -p "$pkgdir" "$stage/usr/bin" "$stage/DEBIAN" \
         "$stage/usr/share/doc/collectd-cgroups/examples"
# The collectd_cgroups package whole (its .py files, no bytecode), and nothing else of the checkout:
# the lab (ccg_lab/) and the tests (tests/) are not installed.
(cd "$src" && find collectd_cgroups -name '*.py' ! -path '*/__pycache__/*') | while read -r f; do
    mkdir -p "$stage/usr/lib/python3/dist-packages/$(dirname "$f")"
    install -m 0644 "$src/$f" "$stage/usr/lib/python3/dist-packages/$f"
done
cat > "$stage/usr/bin/collectd-cgroups" <<'PY'
#!/usr/bin/python3
import sys
from collectd_cgroups.__main__ import main
sys.exit(main())
PY
chmod 0755 "$stage/usr/bin/collectd-cgroups"
install -m 0644 "$src/conf/collectd-cgroups.conf" "$stage/usr/share/doc/collectd-cgroups/examples/"
install -m 0644 "$src/README.rst" "$stage/usr/share/doc/collectd-cgroups/"
sed "s/@VERSION@/$version/" "$here/debian/control.in" > "$stage/DEBIAN/control"
mkdir -p "$out"
dpkg-deb --root-owner-group --build "$stage" "$out/collectd-cgroups_${version}_all.deb" >/dev/null
echo "$out/collectd-cgroups_${version}_all.deb"
