// Package version carries the release version, set at link time from VERSION.
package version

// Version is overridden by the Makefile: -X lightwhale/internal/version.Version=...
var Version = "dev"
