#!/usr/bin/env bash
# Builds the Docker stack from source, from the Go module proxy: the Engine
# (moby), the CLI, buildx and Compose as one gobusybox multicall binary (one
# copy of the Go runtime, gRPC, containerd's client... instead of four), and
# containerd, its runc shim, docker-proxy and runc on their own.
# usage: dockerstack/build.sh OUTDIR
# Writes OUTDIR/{docker-multicall,containerd,containerd-shim-runc-v2,
# docker-proxy,runc} and, last, OUTDIR/versions (so its presence means done).
set -euo pipefail

# The versions shipped. One workspace builds the four commands, so they
# share each dependency at one version: Compose's go.mod is the newest and
# sets containerd and BuildKit for all.
MOBY=v2.0.0-beta.24          # the Engine (dockerd, docker-proxy)
CLI=v29.8.2+incompatible     # the docker CLI
BUILDX=v0.37.2
COMPOSE=v5.6.0
CONTAINERD=v2.4.1
RUNC=v1.5.3                  # Docker 29 gives containers a time namespace: runc 1.2 or newer
MAKEBB=v0.6.0                # github.com/u-root/gobusybox/src (needs Go 1.27 to build itself)

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: dockerstack/build.sh OUTDIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
src=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/go/bin:$PATH CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
tags=netgo,osusergo,static_build,nri_no_wasm,grpcnotrace
# dockerd's storage driver is overlay2, pinned by S60dockerd's flag (which a
# daemon.json cannot override): its other graph drivers are never used.
engine_tags=$tags,exclude_graphdriver_btrfs,exclude_graphdriver_zfs,exclude_graphdriver_fuseoverlayfs
# containerd as dockerd runs it: no CRI (the Kubernetes API, which dockerd's
# containerd config disables) and no devmapper or ZFS snapshotters (Docker
# uses overlayfs).
containerd_tags=$tags,no_cri,no_devmapper,no_zfs
step() { printf '== dockerstack: %s (%ss)\n' "$*" "$SECONDS"; }

# The work tree holds Go modules: it goes when the build ends, and its
# leading _ keeps `go test ./...` of this repository out of it meanwhile.
work=$out/_work
rm -rf "$work" "$out/versions" && mkdir -p "$work/ws"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

step "makebb $MAKEBB"
GOTOOLCHAIN=go1.27.3 GOBIN=$work/gbb go install "github.com/u-root/gobusybox/src/cmd/makebb@$MAKEBB"

# dir MODULE@VERSION: the module's source in the module cache.
dir() { go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }
# copy NAME MODULE@VERSION: a writable copy in the workspace.
copy() { cp -a "$(dir "$2")" "$work/ws/$1" && chmod -R u+w "$work/ws/$1"; }

step "sources"
copy moby "github.com/moby/moby/v2@$MOBY"
copy cli "github.com/docker/cli@$CLI"
copy buildx "github.com/docker/buildx@$BUILDX"
copy compose "github.com/docker/compose/v5@$COMPOSE"
(cd "$work/ws/moby" && git apply -p1 "$src/moby-layer-snapshotid.patch")
(cd "$work/ws/moby" && git apply -p1 "$src/moby-iptables-absent-chains.patch")
(cd "$work/ws/moby" && git apply -p1 "$src/moby-buildkit-lazy-platforms.patch")
(cd "$work/ws/moby" && git apply -p1 "$src/moby-iptables-fresh-chains.patch")
(cd "$work/ws/buildx" && git apply -p1 "$src/buildx-no-kubernetes.patch")
# The CLI keeps its module file as vendor.mod (CalVer, not SemVer).
mv "$work/ws/cli/vendor.mod" "$work/ws/cli/go.mod"
mv "$work/ws/cli/vendor.sum" "$work/ws/cli/go.sum"
# A busybox reaches a command by its directory's name, and the CLI runs a
# plugin as docker-NAME: buildx's is cmd/buildx, Compose's cmd/.
mv "$work/ws/buildx/cmd/buildx" "$work/ws/buildx/cmd/docker-buildx"
mkdir "$work/ws/compose/cmd/docker-compose"
mv "$work/ws/compose/cmd/main.go" "$work/ws/compose/cmd/docker-compose/"
(cd "$work/ws" && go work init ./moby ./cli ./buildx ./compose)

# What each program reports: the release, and the module version for the
# commit. The Engine's release is the Docker version this moby tag is, with
# the tag.
engine=$(sed -n 's/^  last: "\(.*\)"$/\1/p' "$work/ws/moby/releases/versions.yaml")
[ -n "$engine" ] || { echo "dockerstack: no Docker release in moby's releases/versions.yaml" >&2; exit 1; }
engine+=+moby.$MOBY
cli=${CLI#v} cli=${cli%+incompatible}
buildkit=$(cd "$work/ws" && GOWORK=$work/ws/go.work GOFLAGS= go list -m -f '{{.Version}}' github.com/moby/buildkit)
X() { printf ' -X %s=%s' "$1" "$2"; }
ldflags="-s -w -buildid=$(X github.com/moby/moby/v2/dockerversion.Version "$engine")$(X github.com/moby/moby/v2/dockerversion.GitCommit "$MOBY")"
ldflags+="$(X github.com/docker/cli/cli/version.Version "$cli")$(X github.com/docker/cli/cli/version.GitCommit "$CLI")"
ldflags+="$(X github.com/docker/buildx/version.Version "$BUILDX")$(X github.com/docker/buildx/version.Revision "$BUILDX")"
ldflags+="$(X github.com/docker/compose/v5/internal.Version "$COMPOSE")"
ldflags+="$(X github.com/moby/buildkit/version.Version "$buildkit")$(X github.com/moby/buildkit/version.Revision "$buildkit")"

# Our patches' tests (the iptables one against the kernel too, as root); a
# patch that did not apply shows here as no test run.
step "the tests of our moby patches"
t=$(cd "$work/ws" && GOWORK=$work/ws/go.work GOFLAGS= go test -v -count=1 -tags "$engine_tags" -run '^TestLightwhale' ./moby/daemon/libnetwork/iptables/)
echo "$t"
grep -q -- '--- PASS: TestLightwhaleFresh ' <<<"$t" || { echo "dockerstack: TestLightwhaleFresh did not run" >&2; exit 1; }

step "docker-multicall (dockerd, docker, docker-buildx, docker-compose)"
# makebb writes the busybox as a vendored module (GOROOT: else it would use
# the Go it was built with, 1.27); we add one file and build it ourselves.
(cd "$work/ws" && GOWORK=$work/ws/go.work GOFLAGS= GOROOT=$(go env GOROOT) "$work/gbb/makebb" -g \
  -gen-dir "$work/gen" -go-build-tags "$engine_tags" \
  ./moby/cmd/dockerd ./cli/cmd/docker ./buildx/cmd/docker-buildx ./compose/cmd/docker-compose)
main=$(dirname "$(grep -l 'bbmain.Run(' -r "$work/gen" --include=main.go | grep -v /vendor/)")
sed '/^\/\/go:build ignore$/d' "$src/multicall.go" > "$main/multicall.go"
# Inlining on, as each project's own build has it (makebb's default turns
# it off: 13 MiB smaller, at a cost in CPU that dockerd pays at every boot).
(cd "$main" && GOWORK=off GOFLAGS=-mod=vendor go build -trimpath -tags "$engine_tags" -ldflags "$ldflags" \
  -o "$out/docker-multicall" .)

step "containerd $CONTAINERD, its runc shim, docker-proxy"
cX="$(X github.com/containerd/containerd/v2/version.Version "${CONTAINERD#v}")$(X github.com/containerd/containerd/v2/version.Revision "$CONTAINERD")"
GOBIN=$out go install -trimpath -tags "$containerd_tags" -ldflags "-s -w -buildid=$cX" \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD"
GOBIN=$out go install -trimpath -tags "$tags" -ldflags "-s -w -buildid=" \
  "github.com/moby/moby/v2/cmd/docker-proxy@$MOBY"

step "runc $RUNC"
# runc is part C (nsenter) and filters syscalls with libseccomp: cgo,
# linked statically so it needs nothing from the image.
CGO_ENABLED=1 GOBIN=$out go install -trimpath -tags "seccomp urfave_cli_no_docs netgo osusergo" \
  -ldflags "-s -w -buildid= -extldflags -static -X main.version=${RUNC#v}" "github.com/opencontainers/runc@$RUNC"

# One line per component, as /usr/share/lightwhale/versions lists them.
{ echo "docker $engine"; echo "docker-cli $cli"; echo "containerd ${CONTAINERD#v}"; echo "runc ${RUNC#v}"
  echo "docker-buildx ${BUILDX#v}"; echo "docker-compose ${COMPOSE#v}"; echo "go $(go env GOVERSION | sed 's/^go//')"
} > "$out/versions.tmp"
mv "$out/versions.tmp" "$out/versions"
step "done"
