package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/liveprogress"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/reports"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// auditOptions are the audit command's options.
type auditOptions struct {
	judgeFlags
	probeFlags
	torrentPath, trackerListen, dbPath  string
	bootstrap, peerListen               string
	auditorRate                         string
	duration, snapshotEvery, probeEvery time.Duration
	maxConns, maxBWProbes               int
	noDHT, noPEX, noWatch, noTrackers   bool
	lsdFlags
}

// probeFlags are the options of every command that probes peers (probe,
// audit): one name and one default each.
type probeFlags struct {
	encryption, probeBytes string
	probeTimeout           time.Duration
	transportFlag
}

func (fl *probeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&fl.encryption, "encryption", "auto", "auto (MSE, falling back to plaintext), require (MSE with RC4 only) or plaintext")
	fl.transportFlag.register(f)
	f.StringVar(&fl.probeBytes, "probe-bytes", humanize.IBytes(collect.DefaultProbeBytes), "payload requested per bandwidth probe at most (0: bitfield only)")
	f.DurationVar(&fl.probeTimeout, "probe-timeout", collect.DefaultProbeTimeout, "bound on one probe")
}

// parse validates the probe flags.
func (fl *probeFlags) parse() (peerwire.Policy, int64, error) {
	policy, err := peerwire.ParsePolicy(fl.encryption)
	if err != nil {
		return "", 0, usagef("--encryption: %w", err)
	}
	pb, err := parseSize("probe-bytes", fl.probeBytes, true)
	if err != nil {
		return "", 0, err
	}
	return policy, pb, positive("probe-timeout", fl.probeTimeout)
}

// judgeFlags are the options shared by every command that judges stored
// evidence (audit, report): imported announces, tolerances and report
// files.
type judgeFlags struct {
	reportedPath, csvStart         string
	csvStep                        time.Duration
	jsonOut, htmlOut, csvOut       string
	slack                          string
	slackPieces                    int
	suspectFactor, misreportFactor float64
	capacitySuspectFactor          float64
	showPasskeys                   bool
}

// register adds the judging flags to f.
func (fl *judgeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&fl.reportedPath, "reported", "", "import announces from a log: JSON lines, or CSV (.csv)")
	f.StringVar(&fl.csvStart, "csv-start", "", "time of the first CSV line (RFC 3339); required with a CSV --reported")
	f.DurationVar(&fl.csvStep, "csv-step", time.Second, "time between CSV lines")
	f.StringVar(&fl.jsonOut, "json-out", "", "write the audit report as JSON to FILE (schema: docs/report-schema.md)")
	f.StringVar(&fl.htmlOut, "html-out", "", "write the audit report as a self-contained HTML page to FILE")
	f.StringVar(&fl.csvOut, "csv-out", "", "write the per-peer table as CSV to FILE")
	f.BoolVar(&fl.showPasskeys, "show-passkeys", false, "write tracker passkeys in clear in the reports (default: a keyed hash that still groups a user's identities)")
	fl.registerTolerances(f)
}

// registerTolerances adds the verdict tolerances alone (serve judges with
// them but writes no report files).
func (fl *judgeFlags) registerTolerances(f *pflag.FlagSet) {
	fl.csvStep = time.Second
	def := verdict.DefaultConfig()
	f.StringVar(&fl.slack, "slack", humanize.IBytes(uint64(def.SlackBytes)), "tolerance: bytes a report may exceed a bound by (see docs/estimation.md)")
	f.IntVar(&fl.slackPieces, "slack-pieces", def.SlackPieces, "tolerance: pieces a report may exceed a bound by (the larger slack applies)")
	f.Float64Var(&fl.suspectFactor, "suspect-factor", def.SuspectFactor, "tolerance: a report above bound×this (plus slack) is suspect")
	f.Float64Var(&fl.capacitySuspectFactor, "capacity-suspect-factor", def.CapacitySuspectFactor, "tolerance where the bound is probed capacity, which carries its own headroom: a report above it×this (plus slack) is suspect")
	f.Float64Var(&fl.misreportFactor, "misreport-factor", def.MisreportFactor, "tolerance: a report above bound×this (plus slack) is misreporting")
}

// verdictConfig is the verdict configuration the flags ask for. Announces
// that all come from this process (the embedded tracker or its recording
// proxy, no --reported log) are judged with the same-clock slack.
func (fl *judgeFlags) verdictConfig() (verdict.Config, error) {
	vc := verdict.DefaultConfig()
	slack, err := parseSize("slack", fl.slack, true)
	if err != nil {
		return vc, err
	}
	vc.SlackBytes, vc.SlackPieces, vc.SuspectFactor, vc.MisreportFactor = slack, fl.slackPieces, fl.suspectFactor, fl.misreportFactor
	vc.CapacitySuspectFactor = fl.capacitySuspectFactor
	if fl.reportedPath == "" {
		// The embedded tracker stamps announces with this process's clock
		// (the first snapshot of a peer is often taken within a second of
		// its first announce).
		vc.Estimate.ClockSlack = estimate.SameClockSlack
	}
	if err := vc.Validate(); err != nil {
		return vc, usagef("tolerances (--slack, --slack-pieces, --suspect-factor, --capacity-suspect-factor, --misreport-factor): %w", err)
	}
	if err := positive("csv-step", fl.csvStep); err != nil {
		return vc, err
	}
	return vc, nil
}

func newAuditCmd(g *globalOptions) *cobra.Command {
	var fl auditOptions
	cmd := &cobra.Command{
		Use:   "audit --torrent FILE [--duration 30m] [--tracker-listen ADDR] [--reported FILE] [--db PATH]",
		Short: "Audit a swarm: observe every peer, then check what each one reported",
		Long: `Run discovery continuously (the torrent's trackers, the DHT, PEX, incoming
connections and, with --tracker-listen, an embedded tracker that records
every announce), probe every peer politely — a bitfield snapshot every
--snapshot-interval, a bandwidth probe of at most --probe-bytes every
--probe-interval, idle connections that deliver HAVEs in real time — and
record everything in the database as it happens. At the end, every
reporting identity's announces (recorded, or imported with --reported) are
checked against bounds built from the observations, and each gets a verdict:
ok, suspect, misreporting or unverifiable, with reasons and numbers.

A restart with the same --db continues the audit: earlier observations
count. --reported takes JSON lines (see docs) or the CSV
TorrentID,UserID,Addr,Event,Uploaded,Downloaded,Left; CSV has no time
column, so --csv-start (and --csv-step) say when its lines were written.

With --json the JSON report (docs/report-schema.md) goes to stdout instead
of the table.

` + exitCodesHelp,
		Example: `  swarmaudit audit --torrent t.torrent --tracker-listen 127.0.0.1:6969 --duration 10m --json-out audit.json
  swarmaudit audit --torrent t.torrent --reported announces.jsonl --db private.db`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAudit(cmd.Context(), g, fl, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.torrentPath, "torrent", "", "the .torrent file (required)")
	f.DurationVar(&fl.duration, "duration", 30*time.Minute, "how long to observe the swarm")
	f.StringVar(&fl.trackerListen, "tracker-listen", "", "run the embedded recording tracker on ADDR (HTTP and UDP)")
	f.StringVar(&fl.dbPath, "db", "swarmaudit.db", "SQLite database of observations, announces and verdicts")
	f.DurationVar(&fl.snapshotEvery, "snapshot-interval", collect.DefaultSnapshotInterval, "bitfield snapshot of each peer this often")
	f.DurationVar(&fl.probeEvery, "probe-interval", collect.DefaultProbeInterval, "bandwidth probe of each peer at most this often")
	fl.probeFlags.register(f)
	f.IntVar(&fl.maxConns, "max-conns", collect.DefaultMaxConns, "live peer connections at most: probes, idle watches and incoming")
	f.IntVar(&fl.maxBWProbes, "max-bandwidth-probes", 2, "concurrent bandwidth probes at most")
	f.StringVar(&fl.auditorRate, "max-auditor-rate", "1MiB", "cap on the auditor's own average download for bandwidth probes, per second (0: none)")
	f.BoolVar(&fl.noDHT, "no-dht", false, "do not search the DHT")
	f.BoolVar(&fl.noPEX, "no-pex", false, "do not read PEX")
	f.BoolVar(&fl.noWatch, "no-watch", false, "do not keep idle connections for real-time HAVEs")
	f.BoolVar(&fl.noTrackers, "no-trackers", false, "do not announce to the torrent's own trackers")
	f.StringVar(&fl.bootstrap, "dht-bootstrap", "", "DHT bootstrap nodes HOST:PORT,...")
	fl.lsdFlags.register(f)
	f.StringVar(&fl.peerListen, "peer-listen", "", "accept incoming peer connections on ADDR (its port announced, and named first in the embedded tracker's peer lists)")
	fl.judgeFlags.register(f)
	return cmd
}

func runAudit(ctx context.Context, g *globalOptions, fl auditOptions, _ []string) error {
	if fl.torrentPath == "" {
		return usagef("audit needs --torrent")
	}
	policy, pb, err := fl.probeFlags.parse()
	if err != nil {
		return err
	}
	if pb == 0 {
		return usagef("--probe-bytes 0: an audit needs bandwidth probes (give a size such as 2MiB)")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"duration", fl.duration}, {"snapshot-interval", fl.snapshotEvery}, {"probe-interval", fl.probeEvery}} {
		if err := positive(d.flag, d.v); err != nil {
			return err
		}
	}
	if err := atLeast("max-conns", fl.maxConns, 1); err != nil {
		return err
	}
	if err := atLeast("max-bandwidth-probes", fl.maxBWProbes, 1); err != nil {
		return err
	}
	auditorRate, err := parseSize("max-auditor-rate", fl.auditorRate, true)
	if err != nil {
		return err
	}
	vc, err := fl.verdictConfig()
	if err != nil {
		return err
	}
	t, err := torrentmeta.Load(fl.torrentPath)
	if err != nil {
		return err
	}
	errOut := g.stderr
	imported, err := importReported(fl.judgeFlags, t, errOut)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, fl.dbPath, store.WithLogger(slog.Default()))
	if err != nil {
		return err
	}
	defer st.Close()

	book := addrbook.New(addrbook.Options{})
	cfg := audit.Config{
		Torrent: t, Store: st, Book: book, PEX: !fl.noPEX, Duration: fl.duration, Imported: imported,
		Verdict: vc, Logger: slog.Default(),
		Collect: collect.Config{
			SnapshotInterval: fl.snapshotEvery, ProbeInterval: fl.probeEvery, ProbeBytes: pb,
			ProbeTimeout: fl.probeTimeout, MaxConns: fl.maxConns, MaxBandwidthProbes: fl.maxBWProbes, MaxAuditorRate: float64(auditorRate),
			Watch: !fl.noWatch, Policy: policy, PeerID: peerid.New(peerid.Prefix), ClientName: "swarmaudit " + version,
		},
	}
	// A failure to record an announce ends the audit (exit 1): reports
	// must not silently miss what peers said.
	ctx, failRun := context.WithCancelCause(ctx)
	defer failRun(nil)
	// With --peer-listen, peers connect to the auditor: those behind a NAT
	// can be audited only so. The embedded tracker names it first in its
	// peer lists.
	var self func(infohash.T) (uint16, [20]byte, bool)
	if fl.peerListen != "" {
		ln, err := peerwire.Listen(fl.peerListen)
		if err != nil {
			return fmt.Errorf("--peer-listen: %w", err)
		}
		defer ln.Close()
		cfg.Listener = ln
		port, id := uint16(ln.Addr().(*net.TCPAddr).Port), cfg.Collect.PeerID
		self = func(ih infohash.T) (uint16, [20]byte, bool) { return port, id, ih == t.InfoHash }
	}
	nw, sock, err := fl.transportFlag.network(cfg.Listener, true)
	if err != nil {
		return err
	}
	if sock != nil {
		defer sock.Close()
		cfg.UTPListener, cfg.Collect.Holepunch = sock, true
	}
	cfg.Collect.Network = nw
	var embedded *trackerserver.Server
	if fl.trackerListen != "" {
		srv, err := trackerserver.New(trackerserver.Config{
			HTTPAddr: fl.trackerListen, UDPAddr: fl.trackerListen, Interval: trackerInterval(fl.duration),
			Recorder: audit.TeeRecorder{Next: st, Book: book}, Logger: slog.Default(), Self: self,
			OnRecordError: func(err error) { failRun(fmt.Errorf("embedded tracker: %w", err)) },
		})
		if err != nil {
			return err
		}
		if err := srv.Start(ctx); err != nil {
			return err
		}
		defer srv.Close()
		embedded = srv
		fmt.Fprintf(errOut, "embedded tracker: %s and %s\n", srv.HTTPURL(), srv.UDPURL())
	}
	if !fl.noTrackers || !fl.noDHT || fl.lsd {
		dc := discovery.FromTorrent(t)
		if fl.noTrackers {
			dc.Trackers = nil
		}
		if embedded != nil {
			// the embedded tracker records announces; it does not need ours
			dc.Trackers = withoutTrackers(dc.Trackers, embedded.Serves)
		}
		dc.DHT = !fl.noDHT
		if fl.bootstrap != "" {
			dc.Bootstrap = strings.Split(fl.bootstrap, ",")
		}
		fl.lsdFlags.apply(&dc)
		cfg.Discover = &dc
	}
	if cfg.Listener != nil && cfg.Discover != nil {
		cfg.Discover.Port = uint16(cfg.Listener.Addr().(*net.TCPAddr).Port)
	}
	live := liveprogress.New(errOut, fl.duration)
	cfg.Progress = live.Update
	res, err := audit.Run(ctx, cfg)
	live.Close()
	if err != nil {
		return err
	}
	if err := runFailure(ctx); err != nil {
		return err
	}
	return finish(g, res, vc, nil, fl.judgeFlags)
}

// runFailure is the error a component reported through ctx's cancel cause,
// or nil when ctx ended normally (deadline, Ctrl-C) or has not ended.
func runFailure(ctx context.Context) error {
	c := context.Cause(ctx)
	if c == nil || errors.Is(c, context.Canceled) || errors.Is(c, context.DeadlineExceeded) {
		return nil
	}
	return c
}

// finish writes the reports asked for and the verdicts on stdout (a table,
// or with --json the JSON report), and says whether anyone was flagged.
func finish(g *globalOptions, res *audit.Result, vc verdict.Config, truth *reports.Truth, fl judgeFlags) error {
	if err := writeReports(res, vc, truth, !fl.showPasskeys, fl.jsonOut, fl.htmlOut, fl.csvOut, g.stderr); err != nil {
		return err
	}
	if g.JSON {
		rep, err := reports.Build(res, reports.Options{Generator: "swarmaudit " + version, Verdict: vc, Truth: truth, HidePasskeys: !fl.showPasskeys})
		if err != nil {
			return err
		}
		if err := reports.WriteJSON(g.stdout, rep); err != nil {
			return err
		}
	} else {
		printVerdicts(g.stdout, res)
	}
	c := res.Report.Summary.Counts
	if n, s := c[verdict.StatusMisreporting], c[verdict.StatusSuspect]; n+s > 0 {
		return flaggedError{misreporting: n, suspect: s}
	}
	return nil
}

// writeReports writes the JSON, HTML and CSV reports that were asked for.
func writeReports(res *audit.Result, vc verdict.Config, truth *reports.Truth, hidePasskeys bool, jsonOut, htmlOut, csvOut string, errOut io.Writer) error {
	if jsonOut == "" && htmlOut == "" && csvOut == "" {
		return nil
	}
	rep, err := reports.Build(res, reports.Options{Generator: "swarmaudit " + version, Verdict: vc, Truth: truth, HidePasskeys: hidePasskeys})
	if err != nil {
		return err
	}
	for _, w := range []struct {
		path  string
		write func(io.Writer, *reports.Report) error
	}{{jsonOut, reports.WriteJSON}, {htmlOut, reports.WriteHTML}, {csvOut, reports.WriteCSV}} {
		if w.path == "" {
			continue
		}
		f, err := os.Create(w.path)
		if err != nil {
			return err
		}
		if err := w.write(f, rep); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", w.path, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(errOut, "report written to %s\n", w.path)
	}
	return nil
}

// trackerInterval asks clients to re-announce often enough that an audit
// sees several reports: a tenth of the audit, between 10 s and 30 min.
func trackerInterval(d time.Duration) time.Duration {
	return min(max(d/10, 10*time.Second), 30*time.Minute)
}

// importReported reads --reported, reporting bad lines with their numbers.
func importReported(fl judgeFlags, t *torrentmeta.Torrent, errOut io.Writer) ([]reported.Announce, error) {
	if fl.reportedPath == "" {
		return nil, nil
	}
	f, err := os.Open(fl.reportedPath)
	if err != nil {
		return nil, fmt.Errorf("--reported: %w", err)
	}
	defer f.Close()
	var out []reported.Announce
	keep := func(a reported.Announce) error {
		if a.InfoHash == t.InfoHash {
			out = append(out, a)
		}
		return nil
	}
	source := "import:" + filepath.Base(fl.reportedPath)
	var stats reported.ImportStats
	if strings.EqualFold(filepath.Ext(fl.reportedPath), ".csv") {
		if fl.csvStart == "" {
			return nil, errors.New("--reported CSV has no time column: give --csv-start (and --csv-step)")
		}
		start, err := time.Parse(time.RFC3339, fl.csvStart)
		if err != nil {
			return nil, fmt.Errorf("--csv-start: %w", err)
		}
		stats, err = reported.ImportCSV(f, source, reported.CSVOptions{Time: reported.LineClock(start, fl.csvStep)}, keep)
		if err != nil {
			return nil, fmt.Errorf("--reported: %w", err)
		}
	} else if stats, err = reported.ImportJSONLines(f, source, keep); err != nil {
		return nil, fmt.Errorf("--reported: %w", err)
	}
	fmt.Fprintf(errOut, "imported %s: %s; %d for this torrent\n", fl.reportedPath, stats, len(out))
	for _, b := range stats.Bad {
		fmt.Fprintf(errOut, "  %s: %v\n", fl.reportedPath, b)
	}
	if stats.Imported == 0 {
		return nil, fmt.Errorf("--reported %s: no announce could be read (%s)", fl.reportedPath, stats)
	}
	return out, nil
}

// printVerdicts prints one line per reporting identity, worst first.
func printVerdicts(w io.Writer, res *audit.Result) {
	vs := append([]verdict.Verdict(nil), res.Report.Verdicts...)
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Status.Rank() < vs[j].Status.Rank() })
	p := res.Progress
	fmt.Fprintf(w, "%s: %d peers discovered, %d reached, %d probed; auditor moved %s\n\n", res.Evidence.Torrent.Name,
		p.Discovered, p.Reached, p.Probed, humanize.IBytes(uint64(p.BytesIn+p.BytesOut)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tCONFIDENCE\tADDRESS\tREPORTED UP\tREPORTED DOWN\tREASON")
	for _, v := range vs {
		addr := "-"
		if len(v.Identity.Addrs) > 0 {
			addr = v.Identity.Addrs[0].String()
		}
		reason := ""
		if len(v.Reasons) > 0 {
			reason = string(v.Reasons[0].Code) + ": " + v.Reasons[0].Message
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%s\t%s\n", v.Status, v.Confidence, addr,
			humanize.IBytes(uint64(max(v.Uploaded, 0))), humanize.IBytes(uint64(max(v.Downloaded, 0))), reason)
	}
	tw.Flush()
	for _, sc := range res.Scrapes {
		fmt.Fprintf(w, "scrape %s: %d seeders, %d leechers, %d completed; the wire showed %d seeders, %d leechers, %d completions. %s\n",
			sc.Tracker, sc.Seeders, sc.Leechers, sc.Completed, sc.ObservedSeeders, sc.ObservedLeechers, sc.ObservedCompletions, sc.Note)
	}
	c := res.Report.Summary.Counts
	fmt.Fprintf(w, "\n%d misreporting, %d suspect, %d ok, %d unverifiable\n", c[verdict.StatusMisreporting], c[verdict.StatusSuspect], c[verdict.StatusOK], c[verdict.StatusUnverifiable])
}

// withoutTrackers returns the BEP 12 tiers without the trackers drop
// matches, and without tiers left empty.
func withoutTrackers(tiers [][]string, drop func(string) bool) [][]string {
	var out [][]string
	for _, tier := range tiers {
		var kept []string
		for _, u := range tier {
			if !drop(u) {
				kept = append(kept, u)
			}
		}
		if len(kept) > 0 {
			out = append(out, kept)
		}
	}
	return out
}
