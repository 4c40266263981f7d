# Lightwhale in Go. Everything lands under build/ (ignored).
# `make run` and `make test` work on a fresh Debian machine as root:
# scripts/deps.sh installs what is missing and starts a Docker daemon.

VERSION := $(shell cat VERSION)
BUILD   := build
BIN     := $(BUILD)/lightwhale
ISO     := $(BUILD)/lightwhale-$(VERSION)-x86.iso
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
GOFLAGS_BUILD := -trimpath -ldflags '-s -w -X lightwhale/internal/version.Version=$(VERSION)'
GOSRC   := $(shell find cmd applets internal -name '*.go' -not -name '*_test.go') go.mod go.sum
DISKS   ?= 0

.PHONY: all build deps iso run test unit bench clean

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
iso: deps $(ISO)
$(ISO): $(BIN) $(shell find rootfs iso -type f 2>/dev/null) $(CUSTOM)
	CUSTOM=$(abspath $(CUSTOM)) iso/build.sh $(VERSION) $(BIN) $@

run: iso
	iso/run.sh $(ISO) $(DISKS)

# Pure-logic tests only (no root, no ISO).
unit:
	$(GO) test ./...

# Everything: unit, privileged (loop devices, btrfs, namespaces) and the QEMU
# boot tests against the ISO.
test: iso $(BUILD)/stub-kernel
	LIGHTWHALE_BIN=$(abspath $(BIN)) LIGHTWHALE_ISO=$(abspath $(ISO)) \
		LIGHTWHALE_STUB_KERNEL_ROOT=$(abspath $(BUILD)/stub-kernel) \
		$(GO) test -p 1 -count=1 -timeout 80m ./...

# The ISO's own kernel and modules, laid out as a kernel package unpacks, for
# the tests that boot a bare busybox guest (harness self-test, wifi radios).
$(BUILD)/stub-kernel: $(ISO)
	rm -rf $@ && kver=$$(ls $(BUILD)/rootfs/usr/lib/modules) && \
	mkdir -p $@/boot $@/lib/modules && \
	cp $(BUILD)/iso-root/boot/vmlinuz $@/boot/vmlinuz-$$kver && \
	cp -a $(BUILD)/rootfs/usr/lib/modules/$$kver $@/lib/modules/

bench: iso
	LIGHTWHALE_BIN=$(abspath $(BIN)) LIGHTWHALE_ISO=$(abspath $(ISO)) \
		$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

clean:
	rm -rf $(BUILD)
