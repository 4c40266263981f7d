// Package cli holds what every applet shares: its standard streams and a
// FlagSet that prints a usage line and returns errors instead of exiting.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// IO is an applet's standard streams, injected so tests can capture them.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// Std is the process's own streams.
func Std() IO { return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

// NewFlagSet returns a FlagSet whose --help prints usage (one line), a
// description and the flags to out.
func NewFlagSet(name, usage, about string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: %s %s\n", name, usage)
		if about != "" {
			fmt.Fprintf(out, "\n%s\n", about)
		}
		fmt.Fprintln(out)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args; it returns done=true with the exit code when the
// applet must stop (after --help: 0; on a bad flag: 2).
func Parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	default:
		return 2, true
	}
}

// Fail prints "name: err" on one line to stdio.Err and returns exit code 1.
func Fail(stdio IO, name string, err error) int {
	fmt.Fprintf(stdio.Err, "%s: %v\n", name, err)
	return 1
}
