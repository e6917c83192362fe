# jmxdp: see README.md. `make demo` and `make test` are the two commands.
GO        ?= go
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BIN       := bin/jmxdp
DEMO_OUT  := demo-out
FUZZTIME  ?= 20s

.PHONY: all build generate check-generate test test-short bench demo vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/jmxdp

# Rebuild the bpf2go objects with the clang pinned in bpf/gen.go (clang-19). The committed ones are
# what `go build` uses: no clang needed to build jmxdp.
generate:
	BPF2GO_CFLAGS="-O2 -g -Wall -Werror -I/usr/include/$(MULTIARCH)" $(GO) generate ./bpf/...

# CI: the committed objects must be what the pinned clang makes of the C.
check-generate: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf2go output differs from the committed files: run 'make generate' and commit"; exit 1; }

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Tests that load BPF or make namespaces need root; they skip otherwise
# (and fail when CI=true).
test:
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./userspace/jmirror

test-short:
	$(GO) test -short -count=1 ./...

# `jmxdp bench` (full mode, about 12 minutes, as root; see docs/bench.md)
# writes docs/bench/<date>.json and .md. Then the Go benchmark: each
# iteration runs 10000 frames through jmxdp and as many through a trivial
# XDP_PASS program, alternating; x_pass is the ratio. (BenchmarkStreamTable,
# the table at several fill levels, is left to `go test -bench StreamTable
# -benchtime 3x ./loader`: it fills a 1M-entry table per case.)
bench: build
	$(BIN) bench --out docs/bench
	$(GO) test -run '^$$' -bench Program -benchtime 20x -count 5 ./loader

# The main job on an embedded default. As root: the live demo (a veth lab,
# jmxdp attached to it, a few seconds of generated Jmirror traffic, the
# per-stream table and the pcapng files in ./demo-out). Not root: the same
# traffic as a pcap, decoded offline with the Go decoder.
demo: build
	@mkdir -p $(DEMO_OUT) && chmod 700 $(DEMO_OUT)
	@if [ "$$(id -u)" = 0 ]; then \
		$(BIN) demo --out $(DEMO_OUT); \
	else \
		echo "not root: running the offline demo (sudo make demo runs the live one)"; \
		$(BIN) gen --out $(DEMO_OUT)/demo.pcap && \
		$(BIN) decode --out $(DEMO_OUT)/streams $(DEMO_OUT)/demo.pcap && \
		find $(DEMO_OUT)/streams -name '*.pcapng' | sort; \
	fi

clean:
	rm -rf bin $(DEMO_OUT)

# Alert rules for your Prometheus's targets: `make alerts SELECTOR='job="x",cluster="y"'`
# writes bin/alerts.yaml. Without SELECTOR it rewrites the committed
# deploy/prometheus/alerts.yaml from alerts.yaml.tmpl (edit the template, not the rules).
.PHONY: alerts
ALERTS_OUT = $(if $(SELECTOR),bin/alerts.yaml,deploy/prometheus/alerts.yaml)
alerts:
	@mkdir -p bin
	$(GO) run ./deploy/prometheus/gen $(if $(SELECTOR),-selector '$(SELECTOR)') -o $(ALERTS_OUT)
	@echo "wrote $(ALERTS_OUT)"

# docs/img/dashboard.png, the README's picture: the live demo scraped by a real
# Prometheus, its jmxdp console rendered by headless Chromium (as root;
# apt-get install prometheus chromium-headless-shell fonts-dejavu-core).
.PHONY: screenshot
screenshot: build
	sh dashboards/screenshot.sh
