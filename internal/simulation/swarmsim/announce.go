package swarmsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
)

// LieKind names a way a simulated peer misreports its counters.
type LieKind string

// The lies.
const (
	LieNone LieKind = ""
	// LieMultiply reports uploaded × Factor.
	LieMultiply LieKind = "multiply"
	// LieInflate reports uploaded plus Rate bytes per second of fake upload
	// since the peer started.
	LieInflate LieKind = "inflate"
	// LieUnderreportDownload reports downloaded × Factor (0.1 when Factor
	// is 0): a ratio cheat.
	LieUnderreportDownload LieKind = "underreport_download"
)

// ErrBadLie is returned for a Lie that cannot be applied.
var ErrBadLie = errors.New("swarmsim: invalid lie")

// Lie is what a peer does to its counters before announcing them.
type Lie struct {
	Kind   LieKind
	Factor float64 // multiply (> 1), underreport_download (0..1; 0 means 0.1)
	Rate   float64 // inflate: fake upload in bytes per second (> 0)
}

func (l Lie) check() error {
	switch l.Kind {
	case LieNone:
	case LieMultiply:
		if !(l.Factor > 1) || math.IsInf(l.Factor, 0) {
			return fmt.Errorf("%w: multiply needs a finite Factor > 1, got %v", ErrBadLie, l.Factor)
		}
	case LieInflate:
		if !(l.Rate > 0) || math.IsInf(l.Rate, 0) {
			return fmt.Errorf("%w: inflate needs a finite Rate > 0, got %v", ErrBadLie, l.Rate)
		}
	case LieUnderreportDownload:
		if !(l.Factor >= 0 && l.Factor < 1) {
			return fmt.Errorf("%w: underreport_download needs 0 <= Factor < 1, got %v", ErrBadLie, l.Factor)
		}
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrBadLie, l.Kind)
	}
	return nil
}

// Apply returns what a peer with true counters up and down, running for
// elapsed, reports under the lie.
func (l Lie) Apply(up, down int64, elapsed time.Duration) (int64, int64) {
	switch l.Kind {
	case LieMultiply:
		return scale(up, l.Factor), down
	case LieInflate:
		return up + int64(l.Rate*max(elapsed.Seconds(), 0)), down
	case LieUnderreportDownload:
		f := l.Factor
		if f == 0 {
			f = 0.1
		}
		return up, scale(down, f)
	}
	return up, down
}

func scale(v int64, f float64) int64 {
	x := float64(v) * f
	if x >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(x)
}

// Report is one announce a simulated peer sent, with what it claimed and
// what was true at that moment.
type Report struct {
	At         time.Time
	Event      reported.Event
	Uploaded   int64 // as announced
	Downloaded int64 // as announced
	Left       int64
	TrueUp     int64
	TrueDown   int64
	Err        string // the announce failed (the tracker may not have it)
}

// announcer announces one peer to a tracker: started, every interval,
// completed when the download finishes, and stopped at the end.
type announcer struct {
	p        *Peer
	client   *httptracker.Client
	lie      Lie
	interval time.Duration
	numWant  int
	key      uint32
	start    time.Time
	log      func(msg string, args ...any)

	mu    sync.Mutex
	last  Report
	count int
	tid   string
	// completedSent: the tracker has had the completed event, or the peer
	// started complete and owes none.
	completedSent bool
}

// announce sends one announce; a downloading peer learns the peers in the
// reply. It returns the number of peers the tracker gave.
func (a *announcer) announce(ctx context.Context, ev reported.Event) (int, error) {
	up, down, left := a.p.Uploaded(), a.p.Downloaded(), a.p.Left()
	rup, rdown := a.lie.Apply(up, down, time.Since(a.start))
	a.mu.Lock()
	tid := a.tid
	a.mu.Unlock()
	req := trackerclient.Request{
		InfoHash: a.p.cfg.Payload.InfoHash, PeerID: a.p.cfg.PeerID, Port: a.p.addr.Port(),
		Uploaded: rup, Downloaded: rdown, Left: left, Event: ev, Key: a.key,
		NumWant: int32(a.numWant), TrackerID: tid,
	}
	if ev == reported.EventStopped {
		req.NumWant = 0
	}
	// An announce under way is finished even when the swarm stops: cutting
	// it off would leave the tracker with an event the peer thinks it
	// never sent.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	resp, err := a.client.Announce(ctx, req)
	cancel()
	r := Report{At: time.Now(), Event: ev, Uploaded: rup, Downloaded: rdown, Left: left, TrueUp: up, TrueDown: down}
	if err != nil {
		r.Err = err.Error()
		a.log("swarmsim announce", "event", ev, "err", err)
	}
	a.mu.Lock()
	a.last = r
	a.count++
	if resp.TrackerID != "" {
		a.tid = resp.TrackerID
	}
	a.mu.Unlock()
	if err != nil {
		return 0, err
	}
	addrs := make([]netip.AddrPort, 0, len(resp.Peers))
	for _, peer := range resp.Peers {
		addrs = append(addrs, peer.Addr)
	}
	a.p.AddPeers(addrs...)
	return len(resp.Peers), nil
}

// announceTimeout bounds one announce.
const announceTimeout = 10 * time.Second

// run announces started, then periodically, and completed once, until ctx
// ends. The first periodic announce comes after a second when the
// tracker gave fewer peers than asked (it then did not know the swarm yet).
func (a *announcer) run(ctx context.Context, jitter time.Duration) {
	completed := a.p.Complete()
	select {
	case <-completed:
		a.mu.Lock()
		a.completedSent = true // a seeder from the start sends no completed event
		a.mu.Unlock()
		completed = nil
	default:
	}
	got, _ := a.announce(ctx, reported.EventStarted)
	next := a.interval + jitter
	if got < a.numWant {
		next = min(next, time.Second+jitter/4)
	}
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-completed:
			completed = nil
			a.announceNext(ctx)
			t.Reset(a.interval)
		case <-t.C:
			a.announceNext(ctx)
			t.Reset(a.interval)
		}
	}
}

// announceNext sends a periodic announce, or the completed event while the
// peer is complete and the tracker has not had it yet (an announce that
// failed is retried as completed, as clients do).
func (a *announcer) announceNext(ctx context.Context) {
	ev := reported.EventNone
	a.mu.Lock()
	if !a.completedSent && a.complete() {
		ev = reported.EventCompleted
	}
	a.mu.Unlock()
	if _, err := a.announce(ctx, ev); err == nil && ev == reported.EventCompleted {
		a.mu.Lock()
		a.completedSent = true
		a.mu.Unlock()
	}
}

func (a *announcer) complete() bool {
	select {
	case <-a.p.Complete():
		return true
	default:
		return false
	}
}

// stop sends the last announces after the peer has closed: completed if
// the download finished without the tracker having had it, then stopped.
func (a *announcer) stop(ctx context.Context) {
	a.mu.Lock()
	pending := !a.completedSent && a.complete()
	a.mu.Unlock()
	if pending {
		a.announceNext(ctx)
	}
	a.announce(ctx, reported.EventStopped)
}

func (a *announcer) report() (Report, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last, a.count
}
