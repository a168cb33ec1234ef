package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
)

// trackerOptions are the tracker command's options.
type trackerOptions struct {
	upstreamFlags
	trackerListen, udpListen, dbPath string
	interval                         time.Duration
}

func newTrackerCmd(g *globalOptions) *cobra.Command {
	var o trackerOptions
	cmd := &cobra.Command{
		Use:   "tracker --tracker-listen ADDR [--udp-listen ADDR] [--db PATH]",
		Short: "Run a tracker that records every announce (or a recording proxy)",
		Long: `A BitTorrent tracker (HTTP /announce, /announce/<passkey>, /<passkey>/announce
and /scrape; UDP per BEP 15) that serves peers like any tracker and records
every announce — time, info hash, peer_id, source IP, port, uploaded,
downloaded, left, event, key, passkey, user agent — in the database, for
'swarmaudit audit' to check against the wire.

With --upstream it is a recording proxy in front of an existing tracker
(http, https or udp): HTTP announces to an HTTP upstream are forwarded with
the same query; UDP announces (BEP 15), and HTTP announces to a UDP
upstream, are translated — the same counters announced to the upstream,
its reply turned back into the client's protocol. A "{passkey}" in the URL
is replaced by the request's passkey; an announce is recorded only when the
upstream accepted it. The peer's address goes upstream in
--upstream-addr-header and, with --upstream-ip-param, as the announce's ip
parameter (BEP 15's IPv4 field over UDP).

A failure to record an announce stops the tracker with exit code 1.

With --json, stdout carries one JSON object with the announce URLs when the
tracker is up, and one with the count of recorded announces when it stops.

` + exitCodesHelp,
		Example: `  swarmaudit tracker --tracker-listen :6969 --udp-listen :6969 --db tracker.db
  swarmaudit tracker --tracker-listen :8080 --udp-listen :8080 --upstream 'https://tracker.example/{passkey}/announce'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTracker(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.trackerListen, "tracker-listen", "127.0.0.1:6969", "HTTP listen address (empty: no HTTP)")
	f.StringVar(&o.udpListen, "udp-listen", "", "UDP listen address (BEP 15; empty: no UDP)")
	f.StringVar(&o.dbPath, "db", "swarmaudit.db", "SQLite database that records the announces")
	o.upstreamFlags.register(f)
	f.DurationVar(&o.interval, "interval", 30*time.Minute, "announce interval handed to clients")
	return cmd
}

func runTracker(ctx context.Context, g *globalOptions, o trackerOptions, _ []string) error {
	if o.trackerListen == "" && o.udpListen == "" {
		return usagef("tracker needs --tracker-listen or --udp-listen")
	}
	if err := positive("interval", o.interval); err != nil {
		return err
	}
	st, err := store.Open(ctx, o.dbPath, store.WithLogger(slog.Default()))
	if err != nil {
		return err
	}
	defer st.Close()
	counter := &countingRecorder{next: st}
	ctx, failRun := context.WithCancelCause(ctx)
	defer failRun(nil)
	srv, err := trackerserver.New(trackerserver.Config{
		HTTPAddr: o.trackerListen, UDPAddr: o.udpListen, Interval: o.interval, Recorder: counter,
		Upstream: o.upstream, UpstreamAddrHeader: o.upstreamAddrHeader, UpstreamIPParam: o.upstreamIPParam,
		OnRecordError: func(err error) { failRun(err) }, Logger: slog.Default(),
	})
	if err != nil {
		return usageError{err}
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	up := map[string]string{"db": o.dbPath}
	if o.trackerListen != "" {
		up["http_announce_url"] = srv.HTTPURL()
	}
	if o.udpListen != "" {
		up["udp_announce_url"] = srv.UDPURL()
	}
	if g.JSON {
		if err := json.NewEncoder(g.stdout).Encode(up); err != nil {
			return err
		}
	} else {
		if u, ok := up["http_announce_url"]; ok {
			fmt.Fprintf(g.stdout, "HTTP announce URL: %s\n", u)
		}
		if u, ok := up["udp_announce_url"]; ok {
			fmt.Fprintf(g.stdout, "UDP announce URL:  %s\n", u)
		}
		fmt.Fprintf(g.stdout, "recording announces in %s; Ctrl-C to stop\n", o.dbPath)
	}
	<-ctx.Done()
	if err := errors.Join(runFailure(ctx), srv.Close()); err != nil {
		return err
	}
	if g.JSON {
		return json.NewEncoder(g.stdout).Encode(map[string]int64{"announces_recorded": counter.n.Load()})
	}
	fmt.Fprintf(g.stdout, "%d announces recorded\n", counter.n.Load())
	return nil
}

// countingRecorder counts the announces recorded.
type countingRecorder struct {
	next reported.Recorder
	n    atomic.Int64
}

// RecordAnnounce implements reported.Recorder.
func (c *countingRecorder) RecordAnnounce(a reported.Announce) error {
	err := c.next.RecordAnnounce(a)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// upstreamFlags make the embedded tracker a recording proxy (tracker and
// serve).
type upstreamFlags struct {
	upstream, upstreamAddrHeader string
	upstreamIPParam              bool
}

func (u *upstreamFlags) register(f *pflag.FlagSet) {
	f.StringVar(&u.upstream, "upstream", "", "forward announces to this tracker and record them (recording proxy; \"{passkey}\" is replaced by the request's)")
	f.StringVar(&u.upstreamAddrHeader, "upstream-addr-header", "X-Forwarded-For", "HTTP header that passes the peer's address to the upstream (\"-\": none)")
	f.BoolVar(&u.upstreamIPParam, "upstream-ip-param", false, "also pass the peer's address as the announce's ip parameter")
}
