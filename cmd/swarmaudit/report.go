package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/reports"
	"github.com/swarmaudit/swarmaudit/internal/store"
	"github.com/swarmaudit/swarmaudit/internal/torrentmeta"
)

// reportFlags are the report command's options.
type reportFlags struct {
	judgeFlags
	torrentPath, dbPath string
	json                bool
}

func newReportCmd() *cobra.Command {
	var fl reportFlags
	cmd := &cobra.Command{
		Use:   "report --torrent FILE --db PATH [--json-out FILE] [--html-out FILE] [--csv-out FILE]",
		Short: "Judge and report again from stored evidence, without contacting any peer",
		Long: `Read everything an audit stored in --db for the torrent's swarm (observations,
probes, announces; imported logs with --reported), judge it again with the
tolerances given, and write the reports. Nothing is sent on the network:
this is how a changed tolerance, or a newer swarmaudit, is applied to an
audit that already ran.`,
		Example: `  swarmaudit report --torrent t.torrent --db private.db --json-out audit.json --html-out audit.html`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.torrentPath, "torrent", "", "the .torrent file (required)")
	f.StringVar(&fl.dbPath, "db", "swarmaudit.db", "SQLite database an audit wrote")
	f.BoolVar(&fl.json, "json", false, "print the verdicts as one JSON object instead of a table")
	fl.judgeFlags.register(f)
	return cmd
}

func runReport(ctx context.Context, out, errOut io.Writer, fl reportFlags) error {
	if fl.torrentPath == "" {
		return errors.New("report needs --torrent")
	}
	t, err := torrentmeta.Load(fl.torrentPath)
	if err != nil {
		return err
	}
	vc, err := fl.verdictConfig()
	if err != nil {
		return err
	}
	imported, err := importReported(fl.judgeFlags, t, errOut)
	if err != nil {
		return err
	}
	if _, err := os.Stat(fl.dbPath); err != nil {
		return fmt.Errorf("--db: %w", err)
	}
	st, err := store.Open(ctx, fl.dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := audit.Rejudge(ctx, st, t, imported, vc)
	if err != nil {
		return err
	}
	if err := writeReports(res, vc, nil, !fl.showPasskeys, fl.jsonOut, fl.htmlOut, fl.csvOut, errOut); err != nil {
		return err
	}
	if fl.json {
		vr := res.Report
		if !fl.showPasskeys {
			vr = reports.HideVerdictPasskeys(vr)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(vr)
	}
	printVerdicts(out, res)
	return nil
}
