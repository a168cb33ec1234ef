package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

// globalOptions are the flags every command takes, in the manner of
// restic's GlobalOptions: each command is runX(ctx, gopts, opts, args).
type globalOptions struct {
	// JSON: machine-readable output on stdout (one JSON document, or JSON
	// lines where the command says so); human text goes to stderr.
	JSON    bool
	Verbose bool
	stdout  io.Writer
	stderr  io.Writer
}

// The exit codes of every command (README.md, "Exit codes").
const (
	exitOK      = 0 // done; for audit and report: no identity flagged
	exitError   = 1 // the run failed (store, collection, discovery, I/O)
	exitUsage   = 2 // bad command line: unknown flag, missing or invalid value
	exitFlagged = 3 // audit, report: at least one identity suspect or misreporting; status: a user flagged
)

const exitCodesHelp = `Exit codes: 0 done (audit, report, status: nothing flagged), 1 error,
2 usage (a bad or missing flag), 3 at least one identity flagged suspect or
misreporting (audit, report), or one user (status).`

// usageError is a bad command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError; name the flag in the message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// flaggedError says the verdicts flagged identities: exit code 3. The
// reports are written before it is returned.
// users counts the users a daemon flagged (status).
type flaggedError struct{ misreporting, suspect, users int }

func (e flaggedError) Error() string {
	if e.users > 0 {
		return fmt.Sprintf("%d users flagged", e.users)
	}
	return fmt.Sprintf("%d identities misreporting, %d suspect", e.misreporting, e.suspect)
}

// exitCode maps a command's error to the documented exit codes.
func exitCode(err error) int {
	var u usageError
	var f flaggedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &f):
		return exitFlagged
	case errors.As(err, &u):
		return exitUsage
	}
	return exitError
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments (got %q); every input is a flag", cmd.Name(), strings.Join(args, " "))
	}
	return nil
}

// positive checks that a duration flag is above zero.
func positive(flag string, d time.Duration) error {
	if d <= 0 {
		return usagef("--%s %s: must be above zero", flag, d)
	}
	return nil
}

// parseSize reads a size flag with units (2MiB, 512KiB, 1.5GB); zero is
// allowed only when zeroOK.
func parseSize(flag, s string, zeroOK bool) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<62 {
		return 0, usagef("--%s %q: want a size such as 2MiB, 512KiB or 0", flag, s)
	}
	if n == 0 && !zeroOK {
		return 0, usagef("--%s %q: must be above zero", flag, s)
	}
	return int64(n), nil
}

// atLeast checks an integer flag.
func atLeast(flag string, n, min int) error {
	if n < min {
		return usagef("--%s %d: must be %d or more", flag, n, min)
	}
	return nil
}
