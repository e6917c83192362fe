#!/bin/sh
# Build jmxdp's Debian package with dpkg-deb: `make deb` calls this after
# `make build`. Inputs from the environment:
#   BIN      the static binary (bin/jmxdp)
#   VERSION  git describe's version (v1.2.0, v1.2.0-3-gabc1234-dirty, abc1234)
#   ARCH     Debian architecture; GOARCH's names match for amd64 and arm64
#   OUT      directory for jmxdp_<version>_<arch>.deb (bin)
# It prints the package's path. See docs/operating.md, "Install from the
# Debian package".
set -eu

: "${BIN:=bin/jmxdp}" "${VERSION:=dev}" "${ARCH:=amd64}" "${OUT:=bin}"
: "${DEB_MAINTAINER:=jmxdp maintainers <jmxdp@users.noreply.github.com>}"
top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/deploy/deb"

# A Debian version starts with a digit and has no '-' outside the Debian
# revision: v1.2.0 -> 1.2.0, v1.2.0-3-gabc1234-dirty -> 1.2.0+3.gabc1234.dirty,
# a bare commit (no tag yet) abc1234-dirty -> 0.0.0+gabc1234.dirty.
debver=$(printf '%s\n' "$VERSION" | sed -E 's/^v//; s/^([0-9a-f]{7,40})(-|$)/0.0.0+g\1\2/; s/-/+/; s/-/./g')
case "$debver" in
[0-9]*) ;;
*) debver="0.0.0+$(printf '%s' "$debver" | tr -c 'A-Za-z0-9.+~\n' '.')" ;;
esac
debver="$debver-1"

case "$ARCH" in
386) ARCH=i386 ;;
arm) ARCH=armhf ;;
esac

[ -x "$BIN" ] || { echo "build.sh: $BIN: no such executable (make build first)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "build.sh: dpkg-deb not found (apt-get install dpkg)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT INT TERM
umask 022
chmod 0755 "$root" # mktemp's 0700 would become the mode of / on install

install -D -m 0755 "$BIN" "$root/usr/bin/jmxdp"
# The unit as it is in the repository, with the package's binary path.
install -d -m 0755 "$root/usr/lib/systemd/system"
sed 's|^ExecStart=/usr/local/bin/jmxdp |ExecStart=/usr/bin/jmxdp |' "$top/deploy/systemd/jmxdp.service" >"$root/usr/lib/systemd/system/jmxdp.service"
chmod 0644 "$root/usr/lib/systemd/system/jmxdp.service"
grep -q '^ExecStart=/usr/bin/jmxdp ' "$root/usr/lib/systemd/system/jmxdp.service" ||
	{ echo "build.sh: the unit's ExecStart is not /usr/local/bin/jmxdp ...: update build.sh" >&2; exit 1; }

# The config names an interface and intercept ids: root only, like the
# directory the unit's ConfigurationDirectoryMode makes.
install -d -m 0700 "$root/etc/jmxdp"
install -m 0600 "$top/docs/jmxdp.example.yaml" "$root/etc/jmxdp/jmxdp.yaml"

doc="$root/usr/share/doc/jmxdp"
install -d -m 0755 "$doc/docs" "$doc/examples"
install -m 0644 "$top/README.md" "$top/CHANGELOG.md" "$doc/"
install -m 0644 "$here/copyright" "$doc/copyright"
install -m 0644 "$top"/docs/*.md "$doc/docs/"
install -m 0644 "$top/docs/jmxdp.example.yaml" "$top/deploy/prometheus/alerts.yaml" \
	"$top/deploy/prometheus/prometheus.example.yml" "$top/dashboards/jmxdp.json" "$doc/examples/"

install -d -m 0755 "$root/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$root/DEBIAN/$s"
done
echo /etc/jmxdp/jmxdp.yaml >"$root/DEBIAN/conffiles"
(cd "$root" && find usr -type f -exec md5sum {} + | sort -k 2) >"$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$debver|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$size|" -e "s|@MAINTAINER@|$DEB_MAINTAINER|" \
	"$here/control" >"$root/DEBIAN/control"

mkdir -p "$OUT"
deb="$OUT/jmxdp_${debver}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
