# jmxdp: see README.md. `make demo` and `make test` are the two commands.
GO        ?= go
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BIN       := bin/jmxdp
DEMO_OUT  := demo-out
FUZZTIME  ?= 20s
# What `jmxdp version` and jmxdp_build_info report (main.version,
# main.revision); without them the binary falls back on Go's VCS stamp.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X main.version=$(VERSION) -X main.revision=$(REVISION)
IMAGE     ?= ghcr.io/jmxdp/jmxdp
DEB_OUT   ?= bin

.PHONY: all build generate check-generate deps test test-short bench demo vet fmt clean

all: build

# A static binary (no cgo, no interpreter, no shared libraries): the
# container image has no libc, and the .deb depends on nothing.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/jmxdp

.PHONY: deb image

# bin/jmxdp_<version>_<arch>.deb: the binary, the systemd unit, the example
# config as a conffile and the docs (deploy/deb/build.sh; needs dpkg-deb).
deb: build
	BIN=$(BIN) VERSION=$(VERSION) ARCH=$$($(GO) env GOARCH) OUT=$(DEB_OUT) deploy/deb/build.sh

# The container image the DaemonSet names (needs docker and the network).
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE):$(VERSION) .

# Rebuild the bpf2go objects with the clang pinned in bpf/gen.go (clang-19). The committed ones are
# what `go build` uses: no clang needed to build jmxdp.
generate:
	BPF2GO_CFLAGS="-O2 -g -Wall -Werror -I/usr/include/$(MULTIARCH)" $(GO) generate ./bpf/...

# CI: the committed objects must be what the pinned clang makes of the C.
check-generate: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf2go output differs from the committed files: run 'make generate' and commit"; exit 1; }

vet:
	$(GO) vet ./... ./.ci ./.ci/testsummary

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The Debian packages the build checks and the tests need (.ci/deps: only
# what is missing, no upgrades). Not root, it lists what is missing and the
# command to run.
deps:
	@.ci/deps

# Tests that load BPF or make namespaces need root, others a tool or the real
# captures ($JMXDP_TESTDATA); they skip otherwise (and fail when CI=true).
# As root, missing packages are installed first; not root, a warning says
# which. The fuzz run comes first so that the last thing printed is the
# summary of the skipped and failed tests (.ci/testsummary, built rather
# than `go run`, which would turn go test's exit status into 1). ./...
# leaves out dot-directories: .ci's own tests are named.
test:
	@if [ "$$(id -u)" = 0 ]; then .ci/deps; else .ci/deps --warn; fi
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./userspace/jmirror
	$(GO) test -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME) ./userspace/capfile
	@$(GO) build -o bin/testsummary ./.ci/testsummary
	bin/testsummary $(GO) test -count=1 -timeout 20m -json ./... ./.ci ./.ci/testsummary

test-short:
	$(GO) test -short -count=1 ./...

# `jmxdp bench` (full mode, about 12 minutes, as root; see docs/bench.md)
# writes docs/bench/<date>.json and .md; its nats_sink section (about 7
# more minutes) runs `go tool nats-server` clusters, found from here. Then the Go benchmark: each
# iteration runs 10000 frames through jmxdp and as many through a trivial
# XDP_PASS program, alternating; x_pass is the ratio. (BenchmarkStreamTable,
# the table at several fill levels, is left to `go test -bench StreamTable
# -benchtime 3x ./loader`: it fills a 1M-entry table per case.)
# BenchmarkForward: a forwarded frame next to xdp_pass and xdp_tx_swap
# (docs/forward.md). Last, the
# CPU per packet of the file sink and of the NATS sink (1 node, 3 nodes R3)
# on the same packets (docs/scale-out.md#cost).
bench: build
	$(BIN) bench --out docs/bench
	$(GO) test -run '^$$' -bench Program -benchtime 20x -count 5 ./loader
	$(GO) test -run '^$$' -bench Forward -benchtime 20x -count 5 ./loader
	$(GO) test -run '^$$' -bench SinkCPU -benchtime 1000000x ./userspace/natsink

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
