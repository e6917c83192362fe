#!/bin/sh
# Renders docs/img/dashboard.png, the picture in the README: the live demo
# (jmxdp demo on a veth lab) serves /metrics, a real Prometheus scrapes it
# every second and serves jmxdp's console (deploy/prometheus/consoles/
# jmxdp.html, the main rows of dashboards/jmxdp.json), and headless
# Chromium takes the screenshot. Grafana is not in Debian; Prometheus and
# Chromium are:
#   apt-get install prometheus chromium-headless-shell fonts-dejavu-core
# As root (the demo attaches XDP): make screenshot, or
#   sh dashboards/screenshot.sh [--check]
# --check does everything but the demo and the rendering: the tools, the
# console library, the generated Prometheus configuration (promtool checks
# it) and the URL; dashboards/lint_test.go runs it.
# Environment: OUT (the PNG), DURATION (of the demo's traffic, 60s), RATE
# (frames/s, 500), METRICS and PROM (loopback host:port for the demo's
# /metrics and Prometheus).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/img/dashboard.png}
DURATION=${DURATION:-60s}
RATE=${RATE:-500}
METRICS=${METRICS:-127.0.0.1:19877}
PROM=${PROM:-127.0.0.1:19090}
check=false
[ "${1:-}" = --check ] && check=true

need() { command -v "$1" >/dev/null 2>&1 || { echo "screenshot: $1 not installed (apt-get install $2)" >&2; exit 1; }; }
need prometheus prometheus
need promtool prometheus
$check || need curl curl
$check || need chromium-headless-shell chromium-headless-shell

# The console library (prom.lib) ships with Prometheus: Debian puts it
# among the examples, release tarballs in console_libraries/.
lib=
for d in /usr/share/prometheus/console_libraries /usr/share/doc/prometheus/examples/console_libraries /etc/prometheus/console_libraries; do
	if [ -f "$d/prom.lib" ]; then lib=$d; break; fi
done
[ -n "$lib" ] || { echo "screenshot: no Prometheus console library (prom.lib) found" >&2; exit 1; }

for a in "$METRICS" "$PROM"; do
	case "$a" in
	127.*:*) ;;
	*) echo "screenshot: $a: METRICS and PROM must be loopback addresses (127.x.y.z:port)" >&2; exit 1 ;;
	esac
done

work=$(mktemp -d)
prom_pid=
cleanup() {
	[ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$PWD/deploy/prometheus/alerts.yaml"]
scrape_configs:
  - job_name: jmxdp
    static_configs:
      - targets: ["$METRICS"]
EOF
promtool check config "$work/prometheus.yml" >/dev/null

# The console's time range: the demo's traffic and a few seconds around it.
secs=${DURATION%s}
range=$secs
url() { # $1: end time (Unix seconds)
	printf 'http://%s/consoles/jmxdp.html?job=jmxdp&window=10s#pctc%%7B%%22duration%%22%%3A%d%%2C%%22endTime%%22%%3A%d%%7D' "$PROM" "$range" "$1"
}
if $check; then
	echo "library $lib"
	echo "config $work/prometheus.yml"
	echo "url $(url 1700000000)"
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "screenshot: needs root (the live demo attaches XDP)" >&2; exit 1; }

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
	--web.listen-address="$PROM" --web.console.templates=deploy/prometheus/consoles \
	--web.console.libraries="$lib" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
i=0
until curl -sf "http://$PROM/-/ready" >/dev/null; do
	i=$((i + 1))
	[ $i -lt 100 ] || { cat "$work/prometheus.log" >&2; echo "screenshot: Prometheus did not start" >&2; exit 1; }
	sleep 0.1
done

[ -x bin/jmxdp ] || go build -o bin/jmxdp ./cmd/jmxdp
# The picture is taken while the traffic still flows, so that the stat row
# (instant values) shows a live instance.
bin/jmxdp demo --out "$work/demo" --duration "$DURATION" --rate "$RATE" --metrics-addr "$METRICS" >"$work/demo.log" 2>&1 &
demo_pid=$!
sleep $((secs - 3))
mkdir -p "$(dirname "$OUT")"
chromium-headless-shell --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1760 \
	--virtual-time-budget=15000 --screenshot="$OUT" "$(url "$(date +%s)")" 2>"$work/chromium.log" ||
	{ cat "$work/chromium.log" >&2; exit 1; }
wait "$demo_pid" || { cat "$work/demo.log" >&2; echo "screenshot: the demo failed" >&2; exit 1; }
grep -E '^(sending|sent|kernel|writers)' "$work/demo.log"
echo "wrote $OUT"
