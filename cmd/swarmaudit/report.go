package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// reportOptions are the report command's options.
type reportOptions struct {
	judgeFlags
	torrentPath, dbPath string
}

func newReportCmd(g *globalOptions) *cobra.Command {
	var fl reportOptions
	cmd := &cobra.Command{
		Use:   "report --torrent FILE --db PATH [--json-out FILE] [--html-out FILE] [--csv-out FILE]",
		Short: "Judge and report again from stored evidence, without contacting any peer",
		Long: `Read everything an audit stored in --db for the torrent's swarm (observations,
probes, announces; imported logs with --reported), judge it again with the
tolerances given, and write the reports. Nothing is sent on the network:
this is how a changed tolerance, or a newer swarmaudit, is applied to an
audit that already ran. With --json the JSON report (docs/report-schema.md)
goes to stdout instead of the table.

` + exitCodesHelp,
		Example: `  swarmaudit report --torrent t.torrent --db private.db --json-out audit.json --html-out audit.html`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd.Context(), g, fl, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.torrentPath, "torrent", "", "the .torrent file (required)")
	f.StringVar(&fl.dbPath, "db", "swarmaudit.db", "SQLite database an audit wrote")
	fl.judgeFlags.register(f)
	return cmd
}

func runReport(ctx context.Context, g *globalOptions, fl reportOptions, _ []string) error {
	if fl.torrentPath == "" {
		return usagef("report needs --torrent")
	}
	vc, err := fl.verdictConfig()
	if err != nil {
		return err
	}
	t, err := torrentmeta.Load(fl.torrentPath)
	if err != nil {
		return err
	}
	imported, err := importReported(fl.judgeFlags, t, g.stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(fl.dbPath); err != nil && !store.IsPostgresURL(fl.dbPath) {
		return usagef("--db: %w", err)
	}
	st, err := store.Open(ctx, fl.dbPath, store.WithLogger(slog.Default()))
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := audit.Rejudge(ctx, st, t, imported, vc)
	if err != nil {
		return err
	}
	return finish(g, res, vc, nil, fl.judgeFlags)
}
