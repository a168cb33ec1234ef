package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/store"
	"github.com/swarmaudit/swarmaudit/internal/tracker"
)

func newTrackerCmd() *cobra.Command {
	var (
		listen, udp, dbPath, upstream string
		interval                      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "tracker --listen ADDR [--udp ADDR] [--db PATH]",
		Short: "Run a tracker that records every announce (or a recording proxy)",
		Long: `A BitTorrent tracker (HTTP /announce, /announce/<passkey>, /<passkey>/announce
and /scrape; UDP per BEP 15) that serves peers like any tracker and records
every announce — time, info hash, peer_id, source IP, port, uploaded,
downloaded, left, event, key, passkey, user agent — in the database, for
'swarmaudit audit' to check against the wire.

With --upstream it is a recording proxy in front of an existing tracker:
HTTP announces are forwarded with the same query, recorded, and answered
with the upstream's reply (a "{passkey}" in the URL is replaced by the
request's passkey).`,
		Example: `  swarmaudit tracker --listen :6969 --udp :6969 --db tracker.db
  swarmaudit tracker --listen :8080 --upstream 'https://tracker.example/{passkey}/announce'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := store.Open(ctx, dbPath)
			if err != nil {
				return err
			}
			defer st.Close()
			srv, err := tracker.New(tracker.Config{HTTPAddr: listen, UDPAddr: udp, Interval: interval, Recorder: st, Upstream: upstream, Logger: slog.Default()})
			if err != nil {
				return err
			}
			if err := srv.Start(ctx); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if listen != "" {
				fmt.Fprintf(out, "HTTP announce URL: %s\n", srv.HTTPURL())
			}
			if udp != "" {
				fmt.Fprintf(out, "UDP announce URL:  %s\n", srv.UDPURL())
			}
			fmt.Fprintf(out, "recording announces in %s; Ctrl-C to stop\n", dbPath)
			<-ctx.Done()
			return srv.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:6969", "HTTP listen address (empty: no HTTP)")
	f.StringVar(&udp, "udp", "", "UDP listen address (BEP 15; empty: no UDP)")
	f.StringVar(&dbPath, "db", "swarmaudit.db", "SQLite database that records the announces")
	f.StringVar(&upstream, "upstream", "", "forward HTTP announces to this tracker and record them (recording proxy)")
	f.DurationVar(&interval, "interval", 30*time.Minute, "announce interval handed to clients")
	return cmd
}
