// Package e2e holds Lightwhale's end-to-end scenarios: the real ISO booted
// in QEMU (tests/vm), with real disks, reboots and power-offs. They run in
// `make test` (LIGHTWHALE_ISO set by the Makefile) and skip with a reason
// when QEMU or the ISO is missing. `make bench` runs BenchmarkBoot here.
package e2e
