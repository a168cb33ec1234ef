package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// Config configures a whole audit.
type Config struct {
	Torrent *torrentmeta.Torrent
	Store   *store.Store
	// Discover is the discovery configuration (trackers, DHT); nil runs no
	// tracker or DHT discovery (peers then come from Book: the embedded
	// tracker, PEX, incoming).
	Discover *discovery.Config
	// Book receives every address to audit; New makes one if nil. Hand the
	// same book to the embedded tracker's recorder (see TeeRecorder).
	Book *addrbook.Book
	// PEX reads the PEX messages of watched peers; Listener accepts
	// incoming connections. Both go to the collector, the one owner of
	// every peer connection.
	PEX      bool
	Listener net.Listener
	// UTPListener accepts incoming uTP connections (collect.Config).
	UTPListener net.Listener
	Collect     collect.Config
	Duration    time.Duration
	// Imported announces (from tracker logs) judged with the recorded ones.
	Imported []reported.Announce
	Verdict  verdict.Config
	// Progress, if set, is called about once a second.
	Progress func(collect.Progress, time.Duration)
	Logger   *slog.Logger
}

// Result is what an audit produced.
type Result struct {
	Swarm    store.SwarmID
	Run      store.RunID
	Started  time.Time
	Ended    time.Time
	Progress collect.Progress
	Evidence *Evidence
	Report   *verdict.Report
	// Discovery is the discoverer's summary (nil without one).
	Discovery *discovery.Summary
	// Scrapes compare the trackers' scrape counts with the wire.
	Scrapes []ScrapeCheck
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

	// Collection: the collector (every peer connection), discovery and the
	// copy of discovery's addresses into the book, under one errgroup: the
	// first failure ends them all and fails the audit.
	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	cc := cfg.Collect
	cc.Torrent, cc.Store, cc.Swarm, cc.Book, cc.Logger = t, st, swarm, cfg.Book, cfg.Logger
	cc.PEX, cc.Listener, cc.UTPListener = cfg.PEX, cfg.Listener, cfg.UTPListener
	col, err := collect.New(cc)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var disc *discovery.Discoverer
	if cfg.Discover != nil {
		dc := *cfg.Discover
		dc.Book = nil // its own book, copied into ours: it closes its book when it ends
		if dc.Logger == nil {
			dc.Logger = cfg.Logger
		}
		if disc, err = discovery.New(dc); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(runCtx)
	collected := make(chan struct{})
	g.Go(func() error {
		defer close(collected)
		if err := col.Run(gctx); err != nil {
			return fmt.Errorf("audit: collection: %w", err)
		}
		return nil
	})
	if disc != nil {
		g.Go(func() error {
			err := disc.Run(gctx)
			if err != nil && err != discovery.ErrNoSource && gctx.Err() == nil { // no tracker or DHT asked for: peers come from the book
				return fmt.Errorf("audit: discovery: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			addrbook.Copy(gctx, cfg.Book, disc.Book())
			return nil
		})
	}
	if cfg.Progress != nil {
		g.Go(func() error {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-collected:
					return nil
				case <-tick.C:
					left := time.Duration(0)
					if d, ok := runCtx.Deadline(); ok {
						left = time.Until(d)
					}
					cfg.Progress(col.Progress(), left)
				}
			}
		})
	}
	runErr := g.Wait()
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
		runErr = errors.Join(runErr, fmt.Errorf("audit: closing the run: %w", err))
	}
	if runErr != nil {
		// Everything committed before the failure stays in the store;
		// `swarmaudit report` judges it.
		return res, runErr
	}
	if res.Evidence, err = LoadEvidence(bg, st, swarm, t, cfg.Imported); err != nil {
		return res, err
	}
	vc := cfg.Verdict
	if vc == (verdict.Config{}) {
		vc = verdict.DefaultConfig()
	}
	if res.Report, err = res.Evidence.Judge(vc); err != nil {
		return res, fmt.Errorf("audit: %w", err)
	}
	if res.Discovery != nil {
		res.Scrapes = CheckScrapes(res.Discovery.Trackers, res.Report)
	}
	if err := SaveVerdicts(bg, st, swarm, res.Run, res.Report); err != nil {
		return res, fmt.Errorf("audit: save verdicts: %w", err)
	}
	return res, nil
}
