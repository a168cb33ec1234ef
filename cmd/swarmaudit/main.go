// Command swarmaudit audits BitTorrent swarms: it discovers a swarm's peers,
// probes them over the wire, and checks the statistics they report to
// trackers against what the wire shows. This file only wires subcommands to
// the internal packages; see docs/architecture.md for the pipeline.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarmaudit:", err)
	}
	stop()
	os.Exit(exitCode(err))
}

func newRoot() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "swarmaudit",
		Short: "Audit BitTorrent swarms against the statistics peers report",
		Long: `swarmaudit checks what BitTorrent peers report to trackers (uploaded,
downloaded, left) against what the wire shows: which pieces each peer had
when, and how fast it can really upload.

` + exitCodesHelp,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelWarn
			if g.Verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})))
			g.stdout, g.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
		},
	}
	root.PersistentFlags().BoolVarP(&g.Verbose, "verbose", "v", false, "log debug details to stderr")
	root.PersistentFlags().BoolVar(&g.JSON, "json", false, "machine-readable output: JSON on stdout (human text goes to stderr)")
	root.Args = func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q; see swarmaudit --help", args[0])
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		cmd.Help()
		return usagef("a command is needed")
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newProbeCmd(g), newDiscoverCmd(g), newAuditCmd(g), newReportCmd(g), newTrackerCmd(g), newServeCmd(g), newStatusCmd(g), newDemoCmd(g))
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = noArgs
		}
	}
	return root
}
