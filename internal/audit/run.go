package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/discover"
	"github.com/swarmaudit/swarmaudit/internal/discover/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/discover/frompeers"
	"github.com/swarmaudit/swarmaudit/internal/reported"
	"github.com/swarmaudit/swarmaudit/internal/store"
	"github.com/swarmaudit/swarmaudit/internal/torrentmeta"
	"github.com/swarmaudit/swarmaudit/internal/verdict"
	"github.com/swarmaudit/swarmaudit/internal/watch"
)

// Config configures a whole audit.
type Config struct {
	Torrent *torrentmeta.Torrent
	Store   *store.Store
	// Discover is the discovery configuration (trackers, DHT); nil runs no
	// tracker or DHT discovery (peers then come from Book: the embedded
	// tracker, PEX, incoming).
	Discover *discover.Config
	// Book receives every address to audit; New makes one if nil. Hand the
	// same book to the embedded tracker's recorder (see TeeRecorder).
	Book *addrbook.Book
	// PEX watches peers for their PEX messages; Listener accepts incoming.
	PEX      bool
	Listener net.Listener
	Collect  CollectConfig
	Duration time.Duration
	// Imported announces (from tracker logs) judged with the recorded ones.
	Imported []reported.Announce
	Verdict  verdict.Config
	// Progress, if set, is called about once a second.
	Progress func(Progress, time.Duration)
	Logger   *slog.Logger
}

// Result is what an audit produced.
type Result struct {
	Swarm    store.SwarmID
	Run      store.RunID
	Started  time.Time
	Ended    time.Time
	Progress Progress
	Evidence *Evidence
	Report   *verdict.Report
	// Discovery is the discoverer's summary (nil without one).
	Discovery *discover.Summary
	// Scrapes compare the trackers' scrape counts with the wire.
	Scrapes   []ScrapeCheck
	FromPeers frompeers.Stats
}

// Run audits the swarm for cfg.Duration (or until ctx ends), then judges
// everything stored for it, including earlier runs on the same database.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Torrent == nil || cfg.Store == nil {
		return nil, errors.New("audit: needs a torrent and a store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Book == nil {
		cfg.Book = addrbook.New(addrbook.Options{})
	}
	t := cfg.Torrent
	st := cfg.Store
	swarm, err := st.EnsureSwarm(ctx, store.SwarmInfo{InfoHash: t.InfoHash, Name: t.Name, PieceLength: t.PieceLength, TotalLength: t.TotalLength, NumPieces: t.NumPieces})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	// A restart on the same database continues the audit: every peer known
	// from earlier runs is audited again.
	known, err := st.Peers(ctx, swarm)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for _, p := range known {
		src := SourceStored
		if len(p.Sources) > 0 {
			src = p.Sources[0]
		}
		cfg.Book.Add(p.Addr, src, 0)
	}
	res := &Result{Swarm: swarm, Started: time.Now()}
	conf, _ := json.Marshal(map[string]any{"duration": cfg.Duration.String(), "snapshot_interval": cfg.Collect.SnapshotInterval.String(), "probe_interval": cfg.Collect.ProbeInterval.String(), "probe_bytes": cfg.Collect.ProbeBytes})
	if res.Run, err = st.StartRun(ctx, swarm, res.Started, conf); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}

	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	cc := cfg.Collect
	cc.Torrent, cc.Store, cc.Swarm, cc.Book, cc.Logger = t, st, swarm, cfg.Book, cfg.Logger
	col, err := NewCollector(cc)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	var (
		discErr error
		disc    *discover.Discoverer
	)
	workers := 0
	finished := make(chan struct{}, 3)
	if cfg.Discover != nil {
		dc := *cfg.Discover
		dc.Book = nil // its own book, copied into ours: it closes its book when it ends
		if dc.Logger == nil {
			dc.Logger = cfg.Logger
		}
		if disc, err = discover.New(dc); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		workers += 2
		go func() {
			discErr = disc.Run(runCtx)
			finished <- struct{}{}
		}()
		go func() {
			addrbook.Copy(runCtx, cfg.Book, disc.Book())
			finished <- struct{}{}
		}()
	}
	fp := frompeers.Config{
		InfoHash: t.InfoHash, Torrent: t, PEX: cfg.PEX && !t.Private, Listener: cfg.Listener, Book: cfg.Book,
		AddPEX:      cfg.Book.AddPEX,
		AddIncoming: func(a netip.AddrPort) { cfg.Book.Add(a, addrbook.SourceIncoming, 0) },
		Watch:       watch.Options{PeerID: cc.PeerID, Policy: cc.Policy, ClientName: cc.ClientName, Private: t.Private},
		Logger:      cfg.Logger,
	}
	workers++
	go func() {
		res.FromPeers, _ = frompeers.Run(runCtx, fp)
		finished <- struct{}{}
	}()
	go func() {
		defer close(done)
		if err := col.Run(runCtx); err != nil {
			cfg.Logger.Error("collector", "err", err)
		}
	}()
	if cfg.Progress != nil {
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					left := time.Duration(0)
					if d, ok := runCtx.Deadline(); ok {
						left = time.Until(d)
					}
					cfg.Progress(col.Progress(), left)
				}
			}
		}()
	}
	<-done
	for i := 0; i < workers; i++ {
		<-finished
	}
	if discErr != nil && !errors.Is(discErr, discover.ErrNoSource) {
		cfg.Logger.Warn("discovery", "err", discErr)
	}
	if disc != nil {
		s := disc.Summary()
		res.Discovery = &s
	}
	res.Progress = col.Progress()
	res.Ended = time.Now()
	// Shutdown work must finish even when ctx was cancelled (Ctrl-C).
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := st.StopRun(bg, res.Run, res.Ended); err != nil {
		cfg.Logger.Error("store", "err", err)
	}
	if res.Evidence, err = LoadEvidence(bg, st, swarm, t, cfg.Imported); err != nil {
		return res, err
	}
	if res.Discovery != nil {
		res.Scrapes = CheckScrapes(res.Discovery.Trackers, res.Evidence)
	}
	vc := cfg.Verdict
	if vc == (verdict.Config{}) {
		vc = verdict.DefaultConfig()
	}
	if res.Report, err = res.Evidence.Judge(vc); err != nil {
		return res, fmt.Errorf("audit: %w", err)
	}
	if err := SaveVerdicts(bg, st, swarm, res.Run, res.Report); err != nil {
		return res, fmt.Errorf("audit: save verdicts: %w", err)
	}
	return res, nil
}
