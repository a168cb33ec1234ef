package trackerclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient"
)

type call struct {
	at  time.Time
	req trackerclient.Request
}

// fake is an in-memory tracker client.
type fake struct {
	mu      sync.Mutex
	fail    error
	resp    trackerclient.Response
	calls   []call
	scrapes int
	closed  bool
}

func (f *fake) Announce(ctx context.Context, req trackerclient.Request) (trackerclient.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{time.Now(), req})
	if f.fail != nil {
		return trackerclient.Response{}, f.fail
	}
	return f.resp, nil
}

func (f *fake) Scrape(ctx context.Context, ih infohash.T) (trackerclient.Scrape, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scrapes++
	return trackerclient.Scrape{Seeders: 1, Leechers: 2, Completed: int64(2 + f.scrapes)}, nil
}

func (f *fake) Sent() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.calls) + f.scrapes)
}

func (f *fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fake) events() []reported.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []reported.Event
	for _, c := range f.calls {
		out = append(out, c.req.Event)
	}
	return out
}

type fakes map[string]*fake

func (fs fakes) dial(u string) (trackerclient.Client, error) {
	if f, ok := fs[u]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("%w: %s", trackerclient.ErrUnsupportedScheme, u)
}

func run(t *testing.T, cfg trackerclient.AnnouncerConfig, d time.Duration) *trackerclient.Announcer {
	t.Helper()
	cfg.Shuffle = func([]string) {}
	if cfg.Floor == 0 {
		cfg.Floor = 10 * time.Millisecond
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 10 * time.Millisecond
	}
	a, err := trackerclient.NewAnnouncer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

var ok = trackerclient.Response{Interval: 50 * time.Millisecond, Seeders: 1, Leechers: 2,
	Peers: []trackerclient.Peer{{Addr: netip.MustParseAddrPort("10.0.0.1:1")}}}

func TestFailoverAndEvents(t *testing.T) {
	fs := fakes{
		"a": {fail: errors.New("down")},
		"b": {resp: ok},
	}
	var mu sync.Mutex
	got := map[string]int{}
	a := run(t, trackerclient.AnnouncerConfig{
		Tiers:   [][]string{{"a", "b", "a", ""}}, // duplicates and empties dropped
		Dial:    fs.dial,
		Request: trackerclient.Request{NumWant: 30},
		Stats:   func() (int64, int64) { return 111, 222 },
		OnPeers: func(u string, p []trackerclient.Peer) { mu.Lock(); got[u] += len(p); mu.Unlock() },
		Scrape:  true,
	}, 400*time.Millisecond)

	// BEP 12: after b answered it moved to the front, so a is tried once.
	if n := len(fs["a"].calls); n != 1 {
		t.Errorf("a tried %d times, want 1", n)
	}
	ev := fs["b"].events()
	if len(ev) < 3 || ev[0] != reported.EventStarted || ev[len(ev)-1] != reported.EventStopped {
		t.Fatalf("b events %q: want started first, stopped last", ev)
	}
	for _, e := range ev[1 : len(ev)-1] {
		if e != reported.EventNone {
			t.Fatalf("b events %q: regular announces must have no event", ev)
		}
	}
	for i, c := range fs["b"].calls {
		wantNum := int32(30)
		if i == len(fs["b"].calls)-1 {
			wantNum = 0
		}
		if c.req.Uploaded != 111 || c.req.Downloaded != 222 || c.req.NumWant != wantNum {
			t.Errorf("call %d: %+v", i, c.req)
		}
	}
	// scraped after the first announce and once more at the end
	if fs["b"].scrapes != 2 || !fs["a"].closed || !fs["b"].closed {
		t.Errorf("scrapes %d closed %v %v", fs["b"].scrapes, fs["a"].closed, fs["b"].closed)
	}
	st := a.Status()
	if len(st) != 2 || st[0].URL != "a" || st[0].Failures != 1 || st[0].Started || st[0].LastError == "" ||
		st[1].URL != "b" || !st[1].Started || !st[1].Stopped || st[1].Scrape == nil || st[1].Scrape.Completed != 4 ||
		st[1].Peers != got["b"] || st[1].Seeders != 1 {
		t.Errorf("status %+v", st)
	}
}

func TestIntervalRespected(t *testing.T) {
	r := ok
	r.Interval, r.MinInterval = 60*time.Millisecond, 150*time.Millisecond
	fs := fakes{"b": {resp: r}}
	run(t, trackerclient.AnnouncerConfig{Tiers: [][]string{{"b"}}, Dial: fs.dial}, 700*time.Millisecond)
	calls := fs["b"].calls
	if len(calls) < 3 {
		t.Fatalf("%d announces", len(calls))
	}
	// Never sooner than the min interval (the last one is the stop).
	for i := 1; i < len(calls)-1; i++ {
		if gap := calls[i].at.Sub(calls[i-1].at); gap < 150*time.Millisecond {
			t.Errorf("announce %d came %v after the previous one, min interval 150ms", i, gap)
		}
	}
}

func TestFloorBoundsHostileInterval(t *testing.T) {
	r := ok
	r.Interval = time.Nanosecond
	fs := fakes{"b": {resp: r}}
	run(t, trackerclient.AnnouncerConfig{Tiers: [][]string{{"b"}}, Dial: fs.dial, Floor: 100 * time.Millisecond}, 450*time.Millisecond)
	// 450 ms / 100 ms floor: at most 5 regular announces plus the stop.
	if n := len(fs["b"].calls); n > 6 {
		t.Errorf("%d announces in 450ms with a 100ms floor", n)
	}
}

func TestTiers(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprint("strict=", strict), func(t *testing.T) {
			fs := fakes{"t1": {resp: ok}, "t2": {resp: ok}}
			run(t, trackerclient.AnnouncerConfig{Tiers: [][]string{{"t1"}, {"t2"}}, Dial: fs.dial, StrictTiers: strict}, 100*time.Millisecond)
			n2 := len(fs["t2"].calls)
			if len(fs["t1"].calls) == 0 || (strict && n2 != 0) || (!strict && n2 == 0) {
				t.Errorf("t1 %d calls, t2 %d calls", len(fs["t1"].calls), n2)
			}
		})
	}
	t.Run("strict falls to the next tier", func(t *testing.T) {
		fs := fakes{"t1": {fail: errors.New("down")}, "t2": {resp: ok}}
		run(t, trackerclient.AnnouncerConfig{Tiers: [][]string{{"t1"}, {"t2"}}, Dial: fs.dial, StrictTiers: true}, 100*time.Millisecond)
		if len(fs["t2"].calls) == 0 {
			t.Error("second tier not used")
		}
	})
}

func TestAllFailRetriesWithBackoff(t *testing.T) {
	fs := fakes{"a": {fail: errors.New("down")}}
	a := run(t, trackerclient.AnnouncerConfig{Tiers: [][]string{{"a", "unknown://x"}}, Dial: fs.dial, RetryBase: 20 * time.Millisecond}, 300*time.Millisecond)
	ev := fs["a"].events()
	// Waits of 20, 40, 80, 160 ms: at most 5 attempts in 300 ms, and no
	// stopped announce to a tracker never started.
	if len(ev) < 2 || len(ev) > 5 {
		t.Errorf("%d attempts", len(ev))
	}
	for _, e := range ev {
		if e != reported.EventStarted {
			t.Errorf("events %q", ev)
		}
	}
	if st := a.Status(); st[1].Failures == 0 || st[1].LastError == "" {
		t.Errorf("unusable URL status %+v", st[1])
	}
}

func TestTrackerIDEchoed(t *testing.T) {
	r := ok
	r.TrackerID = "xyz"
	fs := fakes{"b": {resp: r}}
	run(t, trackerclient.AnnouncerConfig{Tiers: [][]string{{"b"}}, Dial: fs.dial}, 150*time.Millisecond)
	calls := fs["b"].calls
	if len(calls) < 2 || calls[0].req.TrackerID != "" || calls[1].req.TrackerID != "xyz" {
		t.Errorf("tracker ids %+v", calls)
	}
}

func TestNewAnnouncerErrors(t *testing.T) {
	if _, err := trackerclient.NewAnnouncer(trackerclient.AnnouncerConfig{Tiers: [][]string{{"a"}}}); err == nil {
		t.Error("no Dial accepted")
	}
	if _, err := trackerclient.NewAnnouncer(trackerclient.AnnouncerConfig{Tiers: [][]string{{""}, {}}, Dial: fakes{}.dial}); err == nil {
		t.Error("no trackers accepted")
	}
}

func TestDeniedAddr(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		deny bool
	}{
		{"127.0.0.1", true}, {"10.1.2.3", true}, {"172.16.0.1", true}, {"192.168.1.1", true},
		{"169.254.1.1", true}, {"100.64.0.1", true}, {"0.1.2.3", true}, {"0.0.0.0", true},
		{"224.0.0.1", true}, {"255.255.255.255", true}, {"::1", true}, {"fc00::1", true},
		{"fe80::1", true}, {"::ffff:127.0.0.1", true}, {"::", true},
		{"1.1.1.1", false}, {"100.128.0.1", false}, {"2606:4700::1111", false}, {"93.184.216.34", false},
	} {
		if got := trackerclient.DeniedAddr(netip.MustParseAddr(tc.ip)); got != tc.deny {
			t.Errorf("%s: %v, want %v", tc.ip, got, tc.deny)
		}
	}
	if err := trackerclient.CheckAddr(true, "127.0.0.1:80"); !errors.Is(err, trackerclient.ErrDeniedAddress) {
		t.Errorf("CheckAddr: %v", err)
	}
	if err := trackerclient.CheckAddr(false, "127.0.0.1:80"); err != nil {
		t.Errorf("CheckAddr off: %v", err)
	}
	if err := trackerclient.CheckAddr(true, "[2606:4700::1111]:443"); err != nil {
		t.Errorf("CheckAddr public: %v", err)
	}
}
