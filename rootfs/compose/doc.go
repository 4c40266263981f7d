// Package compose pins Docker Compose v2 as a tool of this small module.
//
// `go install github.com/docker/compose/v2/cmd@VERSION` is refused because
// compose's go.mod has exclude/replace directives; built as a dependency of
// this module it works. The Makefile builds it with:
//
//	go build -o build/docker-compose github.com/docker/compose/v2/cmd
//
// This is a nested module, so `go test ./...` of the main module skips it.
package compose
