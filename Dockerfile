# syntax=docker/dockerfile:1
# jmxdp's container image, the one deploy/kubernetes/daemonset.yaml runs:
#
#   make image    # docker build with VERSION and REVISION from git, tagged
#                 # ghcr.io/jmxdp/jmxdp:$(git describe --tags --always --dirty)
#
# The build stage compiles the static binary as `make build` does; the XDP
# program's object (bpf/jmxdp_bpfel.o, committed) is embedded in it by
# bpf2go, so no clang is needed and no object file is shipped beside it.
# The run stage is distroless/static: no shell, no libc, no package manager,
# only the binary, the example config and CA certificates. It runs as root
# (uid 0) because `jmxdp run` insists on it; the DaemonSet drops every
# capability but the six it needs.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-trixie AS build
WORKDIR /src
# Modules first, so that a change to the sources reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=
# .git is not in the build context (.dockerignore): the version comes from
# the build arguments, not from Go's VCS stamp.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
        -ldflags "-X main.version=${VERSION} -X main.revision=${REVISION}" \
        -o /out/jmxdp ./cmd/jmxdp \
    && /out/jmxdp version

FROM gcr.io/distroless/static-debian13 AS run
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="jmxdp" \
      org.opencontainers.image.description="Demultiplex Juniper Jmirror lawful-intercept mirror traffic with XDP" \
      org.opencontainers.image.source="https://github.com/jmxdp/jmxdp" \
      org.opencontainers.image.licenses="Apache-2.0 AND (GPL-2.0-only OR BSD-2-Clause)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/jmxdp /usr/local/bin/jmxdp
# The DaemonSet mounts its ConfigMap over /etc/jmxdp; this copy makes the
# image runnable on its own (after editing the interface).
COPY docs/jmxdp.example.yaml /etc/jmxdp/jmxdp.yaml
COPY LICENSE /usr/share/doc/jmxdp/LICENSE
COPY LICENSES /usr/share/doc/jmxdp/LICENSES
USER 0:0
EXPOSE 9877
ENTRYPOINT ["/usr/local/bin/jmxdp"]
CMD ["run", "--config", "/etc/jmxdp/jmxdp.yaml"]
