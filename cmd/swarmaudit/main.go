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
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "swarmaudit:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:   "swarmaudit",
		Short: "Audit BitTorrent swarms against the statistics peers report",
		Long: `swarmaudit checks what BitTorrent peers report to trackers (uploaded,
downloaded, left) against what the wire shows: which pieces each peer had
when, and how fast it can really upload.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug details to stderr")
	root.AddCommand(newProbeCmd(), newDiscoverCmd(), newAuditCmd(), newReportCmd(), newTrackerCmd(), newDemoCmd())
	return root
}
