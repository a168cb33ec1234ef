package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/swarmaudit/swarmaudit/internal/analysis/estimate"
	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/liveprogress"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/reports"
	"github.com/swarmaudit/swarmaudit/internal/simulation/cheat"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
)

// demoOptions are the demo command's options.
type demoOptions struct {
	peers, cheaters int
	duration        time.Duration
	outDir          string
	seed            uint64
}

func newDemoCmd(g *globalOptions) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [--peers 40] [--cheaters 3] [--duration 90s] [--out DIR]",
		Short: "Audit a simulated swarm with honest and cheating peers, offline",
		Long: `Start swarmaudit's embedded tracker and a simulated swarm on 127.0.0.1 —
real wire protocol, plaintext and MSE peers, upload caps, pieces really
downloaded — in which some peers cheat: ratio proxies and inflated
counters on real peers, and fake announcers (never listening, silent,
without a bitfield, following leechers, flash sessions). Audit it, write
DIR/report.json, DIR/report.html and DIR/peers.csv, and compare the
verdicts with the truth the demo knows. With --json, stdout carries the
JSON report (with the truth) instead of the tables.

The demo exits 0 when it ran, whatever it flagged (its cheaters are meant
to be flagged); otherwise 1, or 2 for a bad flag.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.peers, "peers", 40, "simulated peers (honest and cheating)")
	f.IntVar(&o.cheaters, "cheaters", 3, "how many of them cheat")
	f.DurationVar(&o.duration, "duration", 90*time.Second, "how long to audit")
	f.StringVar(&o.outDir, "out", "demo-out", "directory for report.json, report.html, peers.csv and the database")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the simulated swarm")
	return cmd
}

// demoCheats is the order in which the demo assigns cheats.
var demoCheats = []swarmsim.PeerSpec{
	{Lie: swarmsim.Lie{Kind: swarmsim.LieMultiply, Factor: 3}},
	{Cheat: cheat.Ghost},
	{Lie: swarmsim.Lie{Kind: swarmsim.LieUnderreportDownload, Factor: 0.1}},
	{Cheat: cheat.FlashSession},
	{Cheat: cheat.NoBitfield},
	{Lie: swarmsim.Lie{Kind: swarmsim.LieInflate, Rate: 4 << 20}},
	{Cheat: cheat.Mute},
	{Cheat: cheat.LeecherFollower},
}

// demoSwarm plans the swarm: a few seeders, leechers at various stages with
// various upload caps and encryption policies, and the cheaters.
func demoSwarm(peers, cheaters int, seed uint64) []swarmsim.PeerSpec {
	r := rand.New(rand.NewPCG(seed, 99))
	encs := []swarmsim.Encryption{swarmsim.EncRequired, swarmsim.EncPreferred, swarmsim.EncDisabled}
	var specs []swarmsim.PeerSpec
	seeders := max(2, peers/8)
	for i := 0; i < peers; i++ {
		s := swarmsim.PeerSpec{Role: swarmsim.RoleLeecher, Have: r.Float64() * 0.5, Encryption: encs[r.IntN(len(encs))],
			UploadRate: float64((256 + r.IntN(1792)) << 10)}
		if i < seeders {
			s.Role, s.Have = swarmsim.RoleSeeder, 1
		}
		specs = append(specs, s)
	}
	// Cheaters take the places of leechers from the end of the list.
	for k := 0; k < cheaters && k < peers-seeders; k++ {
		c := demoCheats[k%len(demoCheats)]
		i := peers - 1 - k
		if c.Cheat != "" {
			specs[i] = swarmsim.PeerSpec{Role: swarmsim.RoleLeecher, Cheat: c.Cheat, CheatRate: 2 << 20}
		} else {
			specs[i].Lie = c.Lie
			if c.Lie.Kind == swarmsim.LieMultiply {
				specs[i].Role, specs[i].Have = swarmsim.RoleSeeder, 1 // a seeder that pads its ratio
			}
		}
	}
	return specs
}

func runDemo(ctx context.Context, g *globalOptions, o demoOptions, _ []string) error {
	peers, cheaters, duration, outDir, seed := o.peers, o.cheaters, o.duration, o.outDir, o.seed
	out, errOut := g.stdout, g.stderr
	if peers < 4 || cheaters < 0 || cheaters > peers/2 {
		return usagef("--peers %d --cheaters %d: the demo needs at least 4 peers and at most half of them cheating", peers, cheaters)
	}
	if duration < 20*time.Second {
		return usagef("--duration %s is too short to see anything (20s at least)", duration)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	payload, tor, err := swarmsim.NewPayload("swarmaudit-demo.bin", 32<<20, 128<<10, seed)
	if err != nil {
		return err
	}
	db := filepath.Join(outDir, "demo.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(db + suffix) // each demo starts from a clean database
	}
	st, err := store.Open(ctx, db, store.WithLogger(slog.Default()))
	if err != nil {
		return err
	}
	defer st.Close()
	book := addrbook.New(addrbook.Options{})
	announceEvery := min(max(duration/8, 5*time.Second), 30*time.Second)
	ctx, failRun := context.WithCancelCause(ctx)
	defer failRun(nil)
	srv, err := trackerserver.New(trackerserver.Config{HTTPAddr: "127.0.0.1:0", Interval: announceEvery, MinInterval: announceEvery / 2,
		Recorder: audit.TeeRecorder{Next: st, Book: book}, Logger: slog.Default(),
		OnRecordError: func(err error) { failRun(fmt.Errorf("embedded tracker: %w", err)) }})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()

	specs := demoSwarm(peers, cheaters, seed)
	fmt.Fprintf(errOut, "demo: %d simulated peers (%d cheating) sharing %s on 127.0.0.1, tracker %s; auditing for %s\n",
		peers, cheaters, humanize.IBytes(uint64(tor.TotalLength)), srv.HTTPURL(), duration)
	vc := verdict.DefaultConfig()
	vc.SlackBytes = 4 << 20 // a small swarm: tighter than the default for real swarms
	// The embedded tracker stamps announces with this process's clock: no
	// offset between the tracker's and the auditor's times to allow for.
	vc.Estimate.ClockSlack = estimate.SameClockSlack
	// Simulated peers' rate limiters burst two blocks, and their counters
	// are exact at announce time: a real client's 10 s allowance for bursts
	// and counter lag is not needed.
	vc.BurstWindow = 2 * time.Second
	type auditDone struct {
		res *audit.Result
		err error
	}
	done := make(chan auditDone, 1)
	live := liveprogress.New(errOut, duration)
	go func() {
		res, err := audit.Run(ctx, audit.Config{
			Torrent: tor, Store: st, Book: book, PEX: true, Duration: duration, Verdict: vc, Logger: slog.Default(),
			Progress: live.Update,
			Collect: collect.Config{
				SnapshotInterval: min(max(duration/30, 2*time.Second), time.Minute),
				ProbeInterval:    min(max(duration/6, 5*time.Second), 10*time.Minute),
				ProbeBytes:       512 << 10, ProbeTimeout: 10 * time.Second, MaxConns: 256, MaxBandwidthProbes: 8, Watch: true,
				PeerID: peerid.New(peerid.Prefix), ClientName: peerid.OurName + " " + version,
			},
		})
		done <- auditDone{res, err}
	}()
	swarmCtx, stopSwarm := context.WithCancel(ctx)
	defer stopSwarm()
	sw, err := swarmsim.StartSwarm(swarmCtx, swarmsim.SwarmConfig{
		Payload: payload, InfoBytes: tor.InfoBytes, Peers: specs, Tracker: srv.HTTPURL(),
		AnnounceInterval: announceEvery, Seed: seed, Logger: slog.Default(),
	})
	if err != nil {
		return err
	}
	// Stop the swarm a little before the audit ends, so that its stopped
	// announces are part of the evidence.
	select {
	case <-time.After(duration - min(duration/10, 15*time.Second)):
	case <-ctx.Done():
	}
	if err := sw.Close(); err != nil {
		slog.Warn("closing the simulated swarm", "err", err)
	}
	truth := sw.Truth()
	d := <-done
	live.Close()
	if d.err != nil {
		return d.err
	}
	if err := runFailure(ctx); err != nil {
		return err
	}
	var liars []string
	for _, t := range truth {
		if t.Lie.Kind != swarmsim.LieNone || t.Cheat != "" {
			liars = append(liars, t.Addr.String())
		}
	}
	files := judgeFlags{jsonOut: filepath.Join(outDir, "report.json"), htmlOut: filepath.Join(outDir, "report.html"), csvOut: filepath.Join(outDir, "peers.csv")}
	if err := finish(g, d.res, vc, &reports.Truth{Cheaters: liars}, files); err != nil && exitCode(err) != exitFlagged {
		return err
	}
	if !g.JSON {
		printTruth(out, truth, d.res)
		fmt.Fprintf(out, "\nreports: %s, %s, %s\n", files.htmlOut, files.jsonOut, files.csvOut)
	}
	return nil
}

// printTruth compares the verdicts with what the demo knows: which peers
// really cheated, as a confusion matrix (flagged = suspect or misreporting).
func printTruth(w io.Writer, truth []swarmsim.Truth, res *audit.Result) {
	status := map[string]verdict.Status{}
	for _, v := range res.Report.Verdicts {
		for _, a := range v.Identity.Addrs {
			status[a.String()] = v.Status
		}
	}
	var tp, fp, tn, fn, misHonest int
	fmt.Fprintln(w, "\nthe truth:")
	for _, t := range truth {
		cheats := t.Lie.Kind != swarmsim.LieNone || t.Cheat != ""
		s := status[t.Addr.String()]
		flagged := s == verdict.StatusMisreporting || s == verdict.StatusSuspect
		switch {
		case cheats && flagged:
			tp++
		case cheats:
			fn++
		case flagged:
			fp++
			if s == verdict.StatusMisreporting {
				misHonest++
			}
		default:
			tn++
		}
		if cheats {
			what := string(t.Cheat)
			if what == "" {
				what = string(t.Lie.Kind)
			}
			fmt.Fprintf(w, "  %-21s cheats (%s): audit says %s\n", t.Addr, what, orDash(string(s)))
		}
	}
	fmt.Fprintf(w, "\n                 flagged   not flagged\n  cheating     %8d   %11d\n  honest       %8d   %11d\n", tp, fn, fp, tn)
	fmt.Fprintf(w, "honest peers called misreporting: %d\n", misHonest)
}

func orDash(s string) string {
	if s == "" {
		return "no verdict"
	}
	return s
}
