package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/evidence/trackerdb"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/serve"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// serveOptions are the serve command's options.
type serveOptions struct {
	judgeFlags
	probeFlags
	upstreamFlags
	watchDir, dbPath, apiListen, trackerListen          string
	reportedDir, peerListen                             string
	trackerSchema                                       string
	nodeID                                              string
	leaseTTL                                            time.Duration
	trackerDBEvery, trackerSwarmIdle                    time.Duration
	trackerSwarms                                       bool
	maxSwarms                                           int
	auditorRate                                         string
	pollEvery, judgeEvery                               time.Duration
	snapshotEvery, probeEvery, peerProbeGap             time.Duration
	maxConns, maxBWProbes                               int
	noDHT, noPEX, noWatch, noTrackers, trackerAnnounces bool
}

func newServeCmd(g *globalOptions) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve --watch DIR [--api-listen ADDR] [--tracker-listen ADDR] [--db PATH]",
		Short: "Audit every swarm of a watch folder continuously, with an API, metrics and a dashboard",
		Long: `Audit every .torrent and .magnet in --watch at once and continuously: a
file added is audited within --poll-interval, a file removed stops its
swarm. All swarms share one budget (--max-conns, --max-bandwidth-probes,
--max-auditor-rate, --peer-probe-gap per IP however many swarms it is in);
--max-swarms bounds the swarms at once. Every --judge-interval each swarm
is judged again from the database, over the whole audit and over the last
hour and day, its verdicts saved; users (passkeys, or tracker user ids) are
followed across swarms.

--peer-listen takes incoming peer connections for every swarm on one port
(announced to the torrents' trackers, and named first in every peer list
of the embedded tracker), so that peers behind a NAT, which cannot be
connected to, are audited when they connect.

Reported statistics come from:
  --tracker-listen   the embedded tracker (HTTP and UDP) for every swarm; with
                     --upstream it is a recording proxy in front of the real one
  --tracker-schema   the tracker's own database (unit3d or gazelle, DSN in
                     $SWARMAUDIT_TRACKER_DSN), polled every --tracker-db-interval;
                     with --tracker-swarms its torrents are audited too
  --reported-dir     announce logs (JSON lines) imported as they grow

--api-listen serves GET /api/v1/swarms, /api/v1/swarms/{info hash} (the
swarm's JSON report; ?window=hour|day), /api/v1/users, /api/v1/users/{user},
/swarms/{info hash} (the HTML report), /metrics (Prometheus) and a dashboard
at /. Off loopback it needs a bearer token in $SWARMAUDIT_API_TOKEN.
'swarmaudit status' asks it. Progress is logged (info level) to stderr.

Everything observed is in --db as it happens: a restart on the same
database continues every audit. SIGTERM or Ctrl-C stops it cleanly (each
swarm is judged a last time). With --json, stdout carries one JSON object
with the listening addresses once it is up.

With --db postgres://..., several nodes share the swarms: a node audits a
swarm while it holds the swarm's lease in the database, renews it at every
poll, and a node that dies (even SIGKILL) loses its swarms to the others
within --lease. Each node's API lists every swarm with the node auditing
it; verdicts come from every node's observations.

Exit codes: 0 stopped by a signal, 1 a failure (store, collection), 2 usage.`,
		Example: `  swarmaudit serve --watch /srv/torrents --api-listen 127.0.0.1:8080 --tracker-listen :6969 --db serve.db`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.watchDir, "watch", "", "folder of .torrent and .magnet files to audit (required)")
	f.StringVar(&o.reportedDir, "reported-dir", "", "folder of announce logs (JSON lines: .jsonl, .ndjson, .json) imported as they grow")
	f.StringVar(&o.dbPath, "db", "swarmaudit.db", "SQLite database of observations, announces and verdicts, or a postgres:// URL (password in $PGPASSWORD) shared by several nodes")
	f.StringVar(&o.nodeID, "node-id", "", "this node's name among the nodes sharing a PostgreSQL database (default: the host name)")
	f.DurationVar(&o.leaseTTL, "lease", 30*time.Second, "with PostgreSQL: a node that stops renewing loses its swarms to the others after this long")
	f.StringVar(&o.apiListen, "api-listen", "127.0.0.1:8080", "HTTP address of the API, metrics and dashboard (other than loopback: a bearer token in $"+apiTokenEnv+" is required)")
	f.StringVar(&o.apiListen, "listen", "127.0.0.1:8080", "the same as --api-listen")
	f.StringVar(&o.trackerListen, "tracker-listen", "", "run the embedded recording tracker on ADDR (HTTP and UDP) for every swarm")
	f.StringVar(&o.peerListen, "peer-listen", "", "accept incoming peer connections for every swarm on ADDR (and announce its port to the torrents' trackers)")
	o.upstreamFlags.register(f)
	f.DurationVar(&o.pollEvery, "poll-interval", 5*time.Second, "how often the watch folder is read")
	f.DurationVar(&o.judgeEvery, "judge-interval", 10*time.Minute, "how often each swarm is judged again")
	f.DurationVar(&o.snapshotEvery, "snapshot-interval", collect.DefaultSnapshotInterval, "bitfield snapshot of each peer this often")
	f.DurationVar(&o.probeEvery, "probe-interval", collect.DefaultProbeInterval, "bandwidth probe of each peer at most this often")
	f.DurationVar(&o.peerProbeGap, "peer-probe-gap", collect.DefaultProbeInterval, "bandwidth probe of one IP at most this often, however many swarms it is in")
	o.probeFlags.register(f)
	f.IntVar(&o.maxConns, "max-conns", 256, "live peer connections at most, all swarms together")
	f.IntVar(&o.maxBWProbes, "max-bandwidth-probes", 4, "concurrent bandwidth probes at most, all swarms together")
	f.StringVar(&o.auditorRate, "max-auditor-rate", "4MiB", "cap on the auditor's own average probe download, per second, all swarms together (0: none)")
	f.BoolVar(&o.noDHT, "no-dht", false, "do not search the DHT")
	f.BoolVar(&o.noPEX, "no-pex", false, "do not read PEX")
	f.BoolVar(&o.noWatch, "no-watch", false, "do not keep idle connections for real-time HAVEs")
	f.BoolVar(&o.noTrackers, "no-trackers", false, "do not announce to the torrents' own trackers")
	f.StringVar(&o.trackerSchema, "tracker-schema", "", "read the reports the tracker recorded from its own database: unit3d or gazelle (DSN in $"+trackerDSNEnv+")")
	f.DurationVar(&o.trackerDBEvery, "tracker-db-interval", time.Minute, "how often the tracker's database is read")
	f.BoolVar(&o.trackerAnnounces, "tracker-announces", false, "unit3d: read every announce from its announces log instead of the peers table")
	f.BoolVar(&o.trackerSwarms, "tracker-swarms", false, "also audit every torrent the tracker's database reports peers for (metadata fetched from those peers)")
	f.DurationVar(&o.trackerSwarmIdle, "tracker-swarm-idle", time.Hour, "with --tracker-swarms: stop auditing a torrent without a report for this long")
	f.IntVar(&o.maxSwarms, "max-swarms", 1000, "swarms audited at once at most, the watch folder's first (0: no limit)")
	o.judgeFlags.registerTolerances(f)
	return cmd
}

func runServe(ctx context.Context, g *globalOptions, o serveOptions, _ []string) error {
	if o.watchDir == "" {
		return usagef("serve needs --watch")
	}
	// A daemon's log is its progress: swarms picked up and dropped, each
	// judgement with its counts, at info level (debug with --verbose).
	level := slog.LevelInfo
	if g.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	policy, pb, err := o.probeFlags.parse()
	if err != nil {
		return err
	}
	if pb == 0 {
		return usagef("--probe-bytes 0: an audit needs bandwidth probes (give a size such as 2MiB)")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"tracker-db-interval", o.trackerDBEvery}, {"poll-interval", o.pollEvery}, {"judge-interval", o.judgeEvery}, {"snapshot-interval", o.snapshotEvery}, {"probe-interval", o.probeEvery}, {"peer-probe-gap", o.peerProbeGap}} {
		if err := positive(d.flag, d.v); err != nil {
			return err
		}
	}
	if o.upstream != "" && o.trackerListen == "" {
		return usagef("--upstream needs --tracker-listen (the recording proxy is the embedded tracker)")
	}
	if o.trackerSwarms && o.trackerSchema == "" {
		return usagef("--tracker-swarms needs --tracker-schema (the tracker's database lists the swarms)")
	}
	if err := errors.Join(atLeast("max-conns", o.maxConns, 1), atLeast("max-bandwidth-probes", o.maxBWProbes, 1), atLeast("max-swarms", o.maxSwarms, 0), positive("tracker-swarm-idle", o.trackerSwarmIdle)); err != nil {
		return err
	}
	rate, err := parseSize("max-auditor-rate", o.auditorRate, true)
	if err != nil {
		return err
	}
	vc, err := o.verdictConfig()
	if err != nil {
		return err
	}
	budget := collect.NewBudget(o.maxConns, o.maxBWProbes, float64(rate), pb)
	budget.SetPeerProbeGap(o.peerProbeGap)
	st, err := store.Open(ctx, o.dbPath, store.WithLogger(log))
	if err != nil {
		return err
	}
	defer st.Close()
	var tdb *trackerdb.Reader
	if o.trackerSchema != "" {
		var db *sql.DB
		if tdb, db, err = openTrackerDB(ctx, st, o.trackerSchema, o.trackerAnnounces); err != nil {
			return err
		}
		defer db.Close()
	}
	if store.IsPostgresURL(o.dbPath) && o.nodeID == "" {
		if o.nodeID, err = os.Hostname(); err != nil {
			return fmt.Errorf("--node-id: %w", err)
		}
	}
	if o.nodeID != "" {
		if err := positive("lease", o.leaseTTL); err != nil {
			return err
		}
	}
	if o.nodeID != "" {
		// Per-peer politeness across the nodes: a bandwidth probe of a host
		// takes its turn in the shared database first.
		node, gap := o.nodeID, o.peerProbeGap
		budget.SetPeerGate(func(ip netip.Addr) bool {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			ok, err := st.TakeTurn(gctx, "probe:"+ip.String(), node, gap)
			if err != nil {
				log.Warn("probe turn", "err", err)
				return false // polite when in doubt
			}
			return ok
		})
	}
	var peerLn net.Listener
	if o.peerListen != "" {
		if peerLn, err = peerwire.Listen(o.peerListen); err != nil {
			return fmt.Errorf("--peer-listen: %w", err)
		}
		defer peerLn.Close()
	}
	nw, sock, err := o.transportFlag.network(peerLn, true)
	if err != nil {
		return err
	}
	var utpLn net.Listener
	if sock != nil {
		defer sock.Close()
		utpLn = sock
	}
	svc, err := serve.New(serve.Config{
		Listener: peerLn, UTPListener: utpLn,
		NodeID: o.nodeID, LeaseTTL: o.leaseTTL,
		TrackerDB: tdb, TrackerDBEvery: o.trackerDBEvery, TrackerSwarms: o.trackerSwarms, TrackerSwarmIdle: o.trackerSwarmIdle, MaxSwarms: o.maxSwarms,
		Store: st, WatchDir: o.watchDir, ReportedDir: o.reportedDir, PollEvery: o.pollEvery, JudgeEvery: o.judgeEvery,
		Collect: collect.Config{
			SnapshotInterval: o.snapshotEvery, ProbeInterval: o.probeEvery, ProbeBytes: pb, ProbeTimeout: o.probeTimeout,
			Watch: !o.noWatch, Policy: policy, PeerID: peerid.New(peerid.Prefix), ClientName: peerid.OurName + " " + version,
			Network: nw, Holepunch: sock != nil,
		},
		Budget:   budget,
		Trackers: !o.noTrackers, DHT: !o.noDHT, PEX: !o.noPEX, Verdict: vc, Logger: log,
	})
	if err != nil {
		return usageError{err}
	}
	ctx, failRun := context.WithCancelCause(ctx)
	defer failRun(nil)
	up := map[string]string{}
	if o.trackerListen != "" {
		srv, err := trackerserver.New(trackerserver.Config{
			HTTPAddr: o.trackerListen, UDPAddr: o.trackerListen, Interval: 30 * time.Minute,
			Upstream: o.upstream, UpstreamAddrHeader: o.upstreamAddrHeader, UpstreamIPParam: o.upstreamIPParam,
			Recorder: svc, Logger: log, Self: svc.Self,
			OnRecordError: func(err error) { failRun(fmt.Errorf("embedded tracker: %w", err)) },
		})
		if err != nil {
			return usageError{err}
		}
		if err := srv.Start(ctx); err != nil {
			return err
		}
		defer srv.Close()
		up["http_announce_url"], up["udp_announce_url"] = srv.HTTPURL(), srv.UDPURL()
	}
	handler, err := apiHandler(svc.Handler(), o.apiListen)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.apiListen)
	if err != nil {
		return fmt.Errorf("--api-listen: %w", err)
	}
	api := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	up["api"] = "http://" + ln.Addr().String() + "/"
	if g.JSON {
		if err := writeJSON(g.stdout, up); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.stderr, "serving %s: dashboard and API at %s", o.watchDir, up["api"])
		if u, ok := up["http_announce_url"]; ok {
			fmt.Fprintf(g.stderr, ", tracker %s and %s", u, up["udp_announce_url"])
		}
		fmt.Fprintln(g.stderr)
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		if err := api.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	})
	eg.Go(func() error {
		<-ectx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return api.Shutdown(sctx)
	})
	eg.Go(func() error { return svc.Run(ectx) })
	return errors.Join(eg.Wait(), runFailure(ctx))
}

// apiTokenEnv holds the API's bearer token: a credential, so never a flag
// and never printed.
const apiTokenEnv = "SWARMAUDIT_API_TOKEN"

// apiHandler puts h behind the bearer token of $SWARMAUDIT_API_TOKEN when
// it is set; an address other than loopback requires one.
func apiHandler(h http.Handler, listen string) (http.Handler, error) {
	token := os.Getenv(apiTokenEnv)
	if token == "" {
		if !isLoopback(listen) {
			return nil, usagef("--api-listen %s is not a loopback address: set a bearer token in $%s", listen, apiTokenEnv)
		}
		return h, nil
	}
	if len(token) < 16 {
		return nil, usagef("$%s: a token of 16 characters at least", apiTokenEnv)
	}
	return serve.RequireToken(h, token), nil
}

// isLoopback reports whether a listen address binds loopback only.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// trackerDSNEnv holds the tracker database's DSN: a credential, so never a
// flag (flags show in process lists) and never printed.
const trackerDSNEnv = "SWARMAUDIT_TRACKER_DSN"

// openTrackerDB connects to the tracker's database (MariaDB/MySQL) and
// resumes after the newest report already stored from it.
func openTrackerDB(ctx context.Context, st *store.Store, schema string, announces bool) (*trackerdb.Reader, *sql.DB, error) {
	sc, err := trackerdb.ParseSchema(schema)
	if err != nil {
		return nil, nil, usagef("--tracker-schema: %w", err)
	}
	dsn := os.Getenv(trackerDSNEnv)
	if dsn == "" {
		return nil, nil, usagef("--tracker-schema %s needs the database's DSN in $%s (user:password@tcp(host:3306)/database)", schema, trackerDSNEnv)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, nil, usagef("$%s is not a MySQL DSN", trackerDSNEnv) // the DSN holds a password: not echoed
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, nil, fmt.Errorf("tracker database: %w", err)
	}
	since, err := st.LatestAnnounce(ctx, string(sc))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	r, err := trackerdb.New(ctx, trackerdb.Config{DB: db, Schema: sc, Since: since, Announces: announces})
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("tracker database (%s at %s): %w", sc, cfg.Addr, err)
	}
	return r, db, nil
}
