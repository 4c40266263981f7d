package upgrade

import (
	"errors"
	"fmt"

	"lightwhale/internal/cli"
	"lightwhale/internal/osversion"
)

const rollbackAbout = `Leaves the installed version this machine runs (or a trial not yet booted)
by hand: it is retired, and the next boot runs the previous good version, or
the boot medium's. The state (/etc, /var, /home, Docker's data) is kept as it
is; setup-persistence rollback NAME returns it to the snapshot taken before
the upgrade.`

// RollbackOS is `lightwhale rollback-os`.
func RollbackOS(args []string, stdio cli.IO) int { return rollbackRun(realEnv(), args, stdio) }

func rollbackRun(e *env, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(RollbackName, "", rollbackAbout, stdio.Err)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdio.Err, "%s: unexpected argument %q\n", RollbackName, fs.Arg(0))
		return 2
	}
	if err := e.persistent(e); errors.Is(err, errVolatile) {
		return cli.Fail(stdio, RollbackName, errors.New("this machine is volatile (its data is in RAM): it runs its boot medium's version and has no installed versions; to change versions, write another ISO to the boot medium"))
	} else if err != nil {
		return cli.Fail(stdio, RollbackName, err)
	}
	unlock, err := e.lock()
	if err != nil {
		return cli.Fail(stdio, RollbackName, err)
	}
	defer unlock()
	unlockState, err := osversion.Lock(e.osDir)
	if err != nil {
		return cli.Fail(stdio, RollbackName, err)
	}
	defer unlockState()
	st, err := osversion.Load(e.osDir)
	if err != nil {
		return cli.Fail(stdio, RollbackName, err)
	}
	now := e.now()
	retired, err := st.RollbackOS(e.running, now)
	if err != nil {
		return cli.Fail(stdio, RollbackName, err)
	}
	if err := st.Save(e.osDir); err != nil {
		return cli.Fail(stdio, RollbackName, err)
	}
	next := e.nextBoot(st)
	osversion.Log(e.osDir, now, "rollback-os: %s retired by hand (running %s); the next boot runs %s", retired, e.running, next)
	fmt.Fprintf(stdio.Out, "retired %s; the next boot runs %s\n", retired, next)
	if v := st.Find(retired); v != nil && v.Snapshot != "" {
		fmt.Fprintf(stdio.Out, "the state is kept as it is; setup-persistence rollback %s returns it to before the upgrade to %s\n", v.Snapshot, retired)
	}
	return 0
}

// nextBoot says what the next boot runs. Booted from an installed image,
// this binary does not know the medium's version.
func (e *env) nextBoot(st osversion.State) string {
	if !e.fromImage {
		if n := st.Next(e.running); n != e.running {
			return "installed version " + n
		}
		return "the boot medium's version, " + e.running
	}
	if n := st.Next(""); n != "" {
		return "installed version " + n + " (or the boot medium's version, if it is newer)"
	}
	return "the boot medium's version"
}
