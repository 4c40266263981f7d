# Lightwhale in Go. Everything lands under build/ (ignored).
# `make run` and `make test` work on a fresh Debian machine as root:
# scripts/deps.sh installs what is missing and starts a Docker daemon.

VERSION := $(shell cat VERSION)
BUILD   := build
BIN     := $(BUILD)/lightwhale
ISO     := $(BUILD)/lightwhale-$(VERSION)-x86.iso
STACK   := $(BUILD)/dockerstack/versions
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
GOFLAGS_BUILD := -trimpath -ldflags '-s -w -X lightwhale/internal/version.Version=$(VERSION)'
GOSRC   := $(shell find cmd applets internal -name '*.go' -not -name '*_test.go') go.mod go.sum
DISKS   ?= 0
MEM     ?= 2048
BENCH_N ?= 3
# BENCH_ONLY=boot: make bench measures the boots only (A/B of a boot change).
BENCH_ONLY ?=
# The Debian suite of the image (iso/build.sh checks the mirror has it).
SUITE   ?= trixie
# Read by iso/run.sh and lwqemu from the environment, never spliced into a
# command line.
export DISKS MEM BENCH_N BENCH_ONLY SUITE
# The host-side QEMU launcher: the one QEMU definition (tests/vm) for make run,
# and the one accelerator decision for make run, test and bench.
LWQEMU  := $(BUILD)/lwqemu
ACCEL    = $$($(LWQEMU) -accel -iso $(abspath $(ISO)))

.PHONY: all build deps iso test-isos run check-args test unit bench size clean

all: build

build: $(BIN)
$(BIN): $(GOSRC)
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $@ ./cmd/lightwhale

# Debian packages the build and tests need, and a running Docker daemon.
deps:
	scripts/deps.sh

# CUSTOM=path/to/Dockerfile (FROM lightwhale:$(VERSION)) adds your layer.
CUSTOM ?=
# SIGN_KEY=path/to/key.pem (ed25519, openssl genpkey -algorithm ed25519) signs
# the ISO's manifest; the image it makes then upgrades only to ISOs signed so.
SIGN_KEY ?=
iso: deps $(ISO)
$(ISO): $(BIN) $(STACK) $(shell find rootfs iso -type f 2>/dev/null) $(CUSTOM) $(SIGN_KEY)
	DOCKERSTACK=$(abspath $(dir $(STACK))) CUSTOM=$(abspath $(CUSTOM)) SIGN_KEY=$(if $(SIGN_KEY),$(abspath $(SIGN_KEY))) iso/build.sh $(VERSION) $(BIN) $@

# The Docker stack, built from source (about 11 minutes the first time; Go's
# caches make a rebuild quicker). Its versions file is written last; its
# README does not rebuild it.
$(STACK): $(filter-out %.md,$(wildcard dockerstack/*))
	dockerstack/build.sh $(dir $@)

# Test-only ISOs for tests/e2e/upgrade_test.go: this tree as a newer
# version, and that with a dockerd that never starts. Each in a directory of
# its own (iso/build.sh writes beside its output); fast compression.
UP_VERSION     := $(VERSION).1
BROKEN_VERSION := $(VERSION).2
UP_ISO         := $(BUILD)/up-$(UP_VERSION)/lightwhale-$(UP_VERSION)-x86.iso
BROKEN_ISO     := $(BUILD)/up-$(BROKEN_VERSION)/lightwhale-$(BROKEN_VERSION)-x86.iso
BROKEN_CUSTOM  := tests/e2e/testdata/broken-dockerd/Dockerfile
test-isos: $(UP_ISO) $(BROKEN_ISO)
$(UP_ISO) $(BROKEN_ISO): $(ISO) $(BROKEN_CUSTOM)
	v=$$(basename $(@D)) && v=$${v#up-} && \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X lightwhale/internal/version.Version=$$v" -o $(@D)/lightwhale ./cmd/lightwhale && \
	DOCKERSTACK=$(abspath $(dir $(STACK))) SQUASHFS_COMP=fast SIGN_KEY=$(if $(SIGN_KEY),$(abspath $(SIGN_KEY))) \
	CUSTOM=$(if $(findstring $(BROKEN_VERSION),$@),$(abspath $(BROKEN_CUSTOM))) iso/build.sh $$v $(@D)/lightwhale $@

$(LWQEMU): $(shell find tests/vm -name '*.go' -not -name '*_test.go') go.mod go.sum
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -o $@ ./tests/vm/cmd/lwqemu

# Bad DISKS, MEM or LIGHTWHALE_ACCEL stop make run, test and bench before
# anything is built or booted.
check-args: $(LWQEMU)
	@$(LWQEMU) -check -disks "$$DISKS" -mem "$$MEM"

run: check-args iso
	iso/run.sh $(ISO)

# Pure-logic tests only (no root, no ISO).
unit:
	$(GO) test ./...

# Everything: unit, privileged (loop devices, btrfs, namespaces) and the QEMU
# boot tests against the ISO.
test: check-args iso $(BUILD)/stub-kernel $(LWQEMU) test-isos
	accel=$(ACCEL) && LIGHTWHALE_ACCEL=$$accel LIGHTWHALE_BIN=$(abspath $(BIN)) LIGHTWHALE_ISO=$(abspath $(ISO)) \
		LIGHTWHALE_UPGRADE_ISO=$(abspath $(UP_ISO)) LIGHTWHALE_BROKEN_ISO=$(abspath $(BROKEN_ISO)) \
		LIGHTWHALE_STUB_KERNEL_ROOT=$(abspath $(BUILD)/stub-kernel) \
		$(GO) test -p 1 -count=1 -timeout 80m ./...

# The ISO's own kernel and modules, laid out as a kernel package unpacks, for
# the tests that boot a bare busybox guest (harness self-test, wifi radios).
$(BUILD)/stub-kernel: $(ISO)
	rm -rf $@ && kver=$$(ls $(BUILD)/rootfs/usr/lib/modules) && \
	mkdir -p $@/boot $@/lib/modules && \
	cp $(BUILD)/iso-root/boot/vmlinuz $@/boot/vmlinuz-$$kver && \
	cp -a $(BUILD)/rootfs/usr/lib/modules/$$kver $@/lib/modules/

# Each boot figure is the median of BENCH_N boots; results also in
# build/bench.json.
bench: check-args iso $(LWQEMU)
	accel=$(ACCEL) && LIGHTWHALE_ACCEL=$$accel LIGHTWHALE_BENCH_JSON=$(abspath $(BUILD)/bench.json) LIGHTWHALE_BIN=$(abspath $(BIN)) LIGHTWHALE_ISO=$(abspath $(ISO)) \
		$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 150m ./...

# The ISO's bytes by component (kernel, modules, firmware, the Docker stack,
# the rest, the bootloader), as make bench reports them, without booting.
size: iso $(LWQEMU)
	@$(LWQEMU) -size -iso $(abspath $(ISO))

clean:
	rm -rf $(BUILD)
