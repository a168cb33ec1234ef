// Package serve is swarmaudit as a service: it audits every swarm in a
// watch folder continuously and at once, under one budget of connections,
// bandwidth probes and download rate shared by all of them (each swarm is
// an audit.Run that never ends on its own), records every announce its
// embedded tracker receives for any of them, judges each swarm again from
// the store on an interval, accumulates verdicts per user across swarms,
// and serves an HTTP API (/api/v1/...), Prometheus metrics (/metrics) and
// a dashboard (/).
//
// One Service owns its swarms: a swarm's audit runs on a goroutine the
// service waits for; the first failure of any of them (a store failure)
// ends the service with that error. Observations are in the store as they
// happen (crash-safe); a restart on the same database continues every
// swarm's audit.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/evidence/trackerdb"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/reports"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// Config configures a service.
type Config struct {
	Store *store.Store
	// WatchDir holds the .torrent files to audit; a file added is audited
	// within PollEvery, a file removed stops its swarm's audit.
	WatchDir  string
	PollEvery time.Duration // default 5 s
	// JudgeEvery is how often each swarm is judged again from the store
	// (default 10 min); verdicts are saved and served.
	JudgeEvery time.Duration
	// Collect is the template of every swarm's collection (intervals,
	// encryption, peer id); Budget is shared by all of them.
	Collect collect.Config
	Budget  *collect.Budget
	// Trackers announces to each torrent's own trackers; DHT searches the
	// DHT for public torrents (never for private ones, BEP 27).
	Trackers, DHT bool
	PEX           bool
	// TrackerDB, when set, is polled every TrackerDBEvery (default 1 min)
	// for the reports the tracker itself recorded (UNIT3D, Gazelle); they
	// are stored and judged like the embedded tracker's.
	TrackerDB      *trackerdb.Reader
	TrackerDBEvery time.Duration
	// TrackerSwarms audits every torrent TrackerDB reports on, besides the
	// watch folder's (trackerswarms.go); one without a report for
	// TrackerSwarmIdle (default 1 h) stops. MaxSwarms (0: no limit) bounds
	// the swarms audited at once, the watch folder's first.
	// ReportedDir, when set, holds announce logs (JSON lines) imported as
	// they grow (reporteddir.go).
	ReportedDir string
	// Listener, when set, takes incoming peer connections for every swarm
	// (incoming.go); its port is announced to the torrents' trackers.
	Listener net.Listener
	// UTPListener, when set, takes incoming uTP connections the same way
	// (a utp.Socket made to accept, on the Listener's port).
	UTPListener      net.Listener
	TrackerSwarms    bool
	TrackerSwarmIdle time.Duration
	MaxSwarms        int
	// NodeID and LeaseTTL make several nodes on one PostgreSQL database
	// share the swarms: a node audits a swarm only while it holds the
	// swarm's lease (store.AcquireLease), renewed at every poll; a node that
	// dies loses its swarms to the others within LeaseTTL. An empty NodeID
	// (one node) takes no leases.
	NodeID   string
	LeaseTTL time.Duration
	Verdict  verdict.Config
	Logger   *slog.Logger
}

// Service audits the swarms of a watch folder. Create it with New, run it
// with Run, serve Handler over HTTP, and hand Recorder to the embedded
// tracker.
type Service struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	// runCtx is Run's context, for swarms started while it runs.
	runCtx context.Context
	failed chan error // the first swarm failure

	mu     sync.Mutex
	swarms map[infohash.T]*swarm
	loaded map[string]loadedFile // watch-folder files by path
	leased map[infohash.T]bool   // swarms whose lease this node holds
	// resolving: magnets whose metadata is being fetched (magnet.go)
	resolving map[infohash.T]bool
	wg        sync.WaitGroup // swarm goroutines

	// trackerSwarms are the torrents the tracker's database reported on;
	// owned by Run's loop (noteTrackerSwarms, addTrackerSwarms).
	trackerSwarms map[infohash.T]*trackerSwarm
	warnedMax     bool
	// reportedFiles: the reported folder's logs, by path; owned by Run's
	// loop.
	reportedFiles map[string]*reportedFile

	announces, imported atomic.Int64
	dbRows, dbErrors    atomic.Int64 // tracker-database rows read, failed polls
}

// swarm is one audited torrent.
type swarm struct {
	path    string
	torrent *torrentmeta.Torrent
	book    *addrbook.Book
	added   time.Time
	stop    context.CancelFunc
	done    chan struct{}
	// incoming: connections the service's listener handshook for this
	// swarm, for its collector to take over.
	incoming chan *peerwire.Conn

	progress atomic.Pointer[collect.Progress]
	mu       sync.Mutex
	judged   *judgement // latest judgement of everything, nil before the first
	judgedAt time.Time
	// windows are the latest judgements of the reports of the last hour
	// and day ("hour", "day").
	windows map[string]*judgement
}

// judgement is what the service keeps of one judgement: its verdicts (for
// counts and users), the database's passkey key, and the report built
// from them for the API and the dashboard. The evidence behind it — the
// verdict's per-address timelines included — is not kept: a timeline
// holds two times per piece per peer (a 1,000-peer swarm of 10,000
// pieces: 160 MB), and a swarm keeps three judgements.
type judgement struct {
	verdicts []verdict.Verdict
	counts   map[verdict.Status]int
	key      []byte
	report   *reports.Report // nil when it could not be built: reportErr
	// reportErr says why the report could not be built.
	reportErr error
}

// judgementOf keeps what the service serves of res.
func (s *Service) judgementOf(res *audit.Result) *judgement {
	j := &judgement{verdicts: res.Report.Verdicts, counts: res.Report.Summary.Counts}
	if res.Evidence != nil {
		j.key = res.Evidence.PasskeyKey
	}
	j.report, j.reportErr = reports.Build(res, reports.Options{Generator: "swarmaudit serve", Verdict: s.cfg.Verdict, HidePasskeys: true})
	return j
}

// Windows are the spans verdicts roll over, besides the whole audit: the
// reports of the last hour and of the last day, judged with every
// observation.
var Windows = map[string]time.Duration{"hour": time.Hour, "day": 24 * time.Hour}

// New checks the configuration.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.WatchDir == "" {
		return nil, errors.New("serve: needs a store and a watch folder")
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 5 * time.Second
	}
	if cfg.JudgeEvery <= 0 {
		cfg.JudgeEvery = 10 * time.Minute
	}
	if cfg.TrackerDBEvery <= 0 {
		cfg.TrackerDBEvery = time.Minute
	}
	if cfg.TrackerSwarms && cfg.TrackerDB == nil {
		return nil, errors.New("serve: the tracker's swarms need its database")
	}
	if cfg.TrackerSwarmIdle <= 0 {
		cfg.TrackerSwarmIdle = time.Hour
	}
	if cfg.NodeID != "" {
		if cfg.LeaseTTL <= 0 {
			cfg.LeaseTTL = 30 * time.Second
		}
		cfg.PollEvery = min(cfg.PollEvery, cfg.LeaseTTL/3) // renewals well before expiry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Verdict == (verdict.Config{}) {
		cfg.Verdict = verdict.DefaultConfig()
	}
	if cfg.Budget == nil {
		c := cfg.Collect
		cfg.Budget = collect.NewBudget(max(c.MaxConns, collect.DefaultMaxConns), max(c.MaxBandwidthProbes, 2), c.MaxAuditorRate, c.ProbeBytes)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, swarms: map[infohash.T]*swarm{}, loaded: map[string]loadedFile{}, leased: map[infohash.T]bool{}, resolving: map[infohash.T]bool{}, trackerSwarms: map[infohash.T]*trackerSwarm{}, reportedFiles: map[string]*reportedFile{}, failed: make(chan error, 1)}
	s.metrics = newMetrics(s)
	cfg.Store.ObserveWrites(func(d time.Duration) { s.metrics.storeWrite.Observe(d.Seconds()) })
	return s, nil
}

// Run audits until ctx ends, then stops every swarm's audit (each judges
// and saves its verdicts a last time) and returns. It returns early with
// the first swarm's failure.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	poll := time.NewTicker(s.cfg.PollEvery)
	defer poll.Stop()
	judge := time.NewTicker(s.cfg.JudgeEvery)
	defer judge.Stop()
	var dbPoll <-chan time.Time
	if s.cfg.TrackerDB != nil {
		tk := time.NewTicker(s.cfg.TrackerDBEvery)
		defer tk.Stop()
		dbPoll = tk.C
	}
	for _, ln := range []net.Listener{s.cfg.Listener, s.cfg.UTPListener} {
		if ln != nil {
			s.wg.Add(1)
			go s.acceptLoop(ctx, ln)
		}
	}
	s.scan(ctx)
	runErr := errors.Join(s.pollTrackerDB(ctx), s.importReported(ctx))
loop:
	for runErr == nil {
		select {
		case <-ctx.Done():
			break loop
		case err := <-s.failed:
			runErr = err
			break loop
		case tick := <-poll.C:
			s.metrics.late("scan", tick)
			s.scan(ctx)
			if err := s.importReported(ctx); err != nil {
				runErr = err
				break loop
			}
		case tick := <-dbPoll:
			s.metrics.late("trackerdb", tick)
			if err := s.pollTrackerDB(ctx); err != nil {
				runErr = err
				break loop
			}
		case tick := <-judge.C:
			s.metrics.late("judge", tick)
			if err := s.judgeAll(ctx); err != nil {
				runErr = err
				break loop
			}
		}
	}
	cancel()
	s.wg.Wait()
	s.closeHandedOver()
	select {
	case err := <-s.failed:
		runErr = errors.Join(runErr, err)
	default:
	}
	if s.cfg.NodeID != "" { // hand the swarms over at once, not at expiry
		bg, cancelBG := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancelBG()
		s.mu.Lock()
		for ih := range s.leased {
			runErr = errors.Join(runErr, s.cfg.Store.ReleaseLease(bg, ih.HexString(), s.cfg.NodeID))
		}
		runErr = errors.Join(runErr, s.cfg.Store.ReleaseLease(bg, nodeLease+s.cfg.NodeID, s.cfg.NodeID))
		s.mu.Unlock()
	}
	return runErr
}

// start begins auditing a torrent; called with s.mu held.
func (s *Service) start(path string, t *torrentmeta.Torrent, peers []netip.AddrPort) {
	ctx, stop := context.WithCancel(s.runCtx)
	sw := &swarm{path: path, torrent: t, book: addrbook.New(addrbook.Options{}), added: time.Now(), stop: stop, done: make(chan struct{}),
		incoming: make(chan *peerwire.Conn, incomingQueue)}
	for _, p := range peers {
		sw.book.Add(p, addrbook.SourceMagnet, 0)
	}
	sw.progress.Store(&collect.Progress{})
	s.swarms[t.InfoHash] = sw
	cfg := audit.Config{
		Torrent: t, Store: s.cfg.Store, Book: sw.book, PEX: s.cfg.PEX && !t.Private,
		Collect: s.cfg.Collect, Verdict: s.cfg.Verdict, Logger: s.log.With("swarm", t.InfoHash.HexString()),
		Progress: func(p collect.Progress, _ time.Duration) { sw.progress.Store(&p) },
	}
	cfg.Collect.Budget = s.cfg.Budget
	if s.cfg.Listener != nil || s.cfg.UTPListener != nil {
		cfg.Collect.Incoming = sw.incoming
	}
	if s.cfg.Trackers || (s.cfg.DHT && !t.Private) {
		dc := discovery.FromTorrent(t)
		if !s.cfg.Trackers {
			dc.Trackers = nil
		}
		dc.DHT = s.cfg.DHT && !t.Private
		if s.cfg.Listener != nil {
			dc.Port = uint16(s.cfg.Listener.Addr().(*net.TCPAddr).Port)
		}
		cfg.Discover = &dc
	}
	s.log.Info("auditing", "swarm", t.InfoHash.HexString(), "name", t.Name, "file", path)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(sw.done)
		res, err := audit.Run(ctx, cfg)
		if err != nil {
			select {
			case s.failed <- fmt.Errorf("swarm %s (%s): %w", t.Name, t.InfoHash.HexString(), err):
			default:
			}
			return
		}
		sw.setJudged(s.judgementOf(res), nil)
	}()
}

// drop stops auditing a swarm whose file went away; called with s.mu held.
func (s *Service) drop(ih infohash.T) {
	sw := s.swarms[ih]
	delete(s.swarms, ih)
	sw.stop()
	s.log.Info("stopped auditing", "swarm", ih.HexString(), "file", sw.path)
}

// RecordAnnounce implements reported.Recorder for the embedded tracker:
// every announce is stored, and its address goes to its swarm's book, so
// every reporting peer is audited on the wire.
func (s *Service) RecordAnnounce(a reported.Announce) error {
	s.mu.Lock()
	sw := s.swarms[a.InfoHash]
	s.mu.Unlock()
	var rec reported.Recorder = s.cfg.Store
	if sw != nil {
		rec = audit.TeeRecorder{Next: s.cfg.Store, Book: sw.book}
	}
	if err := rec.RecordAnnounce(a); err != nil {
		return err
	}
	s.announces.Add(1)
	return nil
}

// pollTrackerDB records what the tracker's database recorded since the
// last poll. A database that cannot be read is retried at the next poll
// (the tracker's hiccup); a store that cannot record fails the service.
func (s *Service) pollTrackerDB(ctx context.Context) error {
	if s.cfg.TrackerDB == nil {
		return nil
	}
	anns, err := s.cfg.TrackerDB.Poll(ctx)
	if err != nil {
		s.dbErrors.Add(1)
		s.log.Warn("tracker database: poll failed, retrying at the next", "err", err)
	}
	for _, a := range anns {
		if err := s.RecordAnnounce(a); err != nil {
			return fmt.Errorf("recording the tracker database's reports: %w", err)
		}
	}
	s.dbRows.Add(int64(len(anns)))
	s.noteTrackerSwarms(anns)
	return nil
}

// judgeAll judges every swarm again from the store.
func (s *Service) judgeAll(ctx context.Context) error {
	for _, sw := range s.list() {
		start := time.Now()
		res, err := audit.Rejudge(ctx, s.cfg.Store, sw.torrent, nil, s.cfg.Verdict)
		if errors.Is(err, store.ErrNotFound) {
			continue // no run stored yet
		}
		if err == nil {
			err = audit.SaveVerdicts(ctx, s.cfg.Store, res.Swarm, res.Run, res.Report)
		}
		if err != nil && ctx.Err() != nil {
			return nil // stopping: each swarm's audit judges a last time
		}
		if err != nil {
			return fmt.Errorf("judge %s: %w", sw.torrent.Name, err)
		}
		windows := make(map[string]*judgement, len(Windows))
		for name, span := range Windows {
			wres, err := audit.RejudgeSince(ctx, s.cfg.Store, sw.torrent, nil, s.cfg.Verdict, time.Now().Add(-span))
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("judge %s over the last %s: %w", sw.torrent.Name, name, err)
			}
			windows[name] = s.judgementOf(wres)
		}
		s.metrics.judged(time.Since(start))
		// The whole audit and its windows are published together, so a
		// reader never sees this round's whole with the last round's hour.
		sw.setJudged(s.judgementOf(res), windows)
		p, c := sw.progress.Load(), res.Report.Summary.Counts
		s.log.Info("judged", "swarm", sw.torrent.InfoHash.HexString(), "name", sw.torrent.Name,
			"peers", p.Discovered, "reached", p.Reached, "probed", p.Probed, "probes", p.Probes,
			"misreporting", c[verdict.StatusMisreporting], "suspect", c[verdict.StatusSuspect], "ok", c[verdict.StatusOK],
			"unverifiable", c[verdict.StatusUnverifiable], "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// judgement is the latest judgement over a window ("" for the whole audit).
func (sw *swarm) judgement(window string) *judgement {
	if window == "" {
		res, _ := sw.latest()
		return res
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.windows[window]
}

// setJudged publishes a judgement of the whole audit and, when given,
// of its windows.
func (sw *swarm) setJudged(res *judgement, windows map[string]*judgement) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.judged, sw.judgedAt = res, time.Now()
	if windows != nil {
		sw.windows = windows
	}
}

func (sw *swarm) latest() (*judgement, time.Time) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.judged, sw.judgedAt
}

// list returns the swarms, by name.
func (s *Service) list() []*swarm {
	s.mu.Lock()
	out := make([]*swarm, 0, len(s.swarms))
	for _, sw := range s.swarms {
		out = append(out, sw)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].torrent.Name < out[j].torrent.Name })
	return out
}
