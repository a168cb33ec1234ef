package addrbook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"1.2.3.4:6881", "1.2.3.4:6881", true},
		{"127.0.0.1:1", "127.0.0.1:1", true},
		{"[::ffff:1.2.3.4]:6881", "1.2.3.4:6881", true},
		{"[fe80::1%eth0]:6881", "[fe80::1]:6881", true},
		{"[2001:db8::1]:443", "[2001:db8::1]:443", true},
		{"1.2.3.4:0", "", false},
		{"0.0.0.0:6881", "", false},
		{"0.1.2.3:6881", "", false},
		{"[::]:6881", "", false},
		{"224.0.0.1:6881", "", false},
		{"[ff02::1]:6881", "", false},
		{"255.255.255.255:6881", "", false},
		{"[::ffff:0.0.0.0]:6881", "", false},
	} {
		got, err := addrbook.Normalize(netip.MustParseAddrPort(tc.in))
		if tc.ok != (err == nil) {
			t.Errorf("%s: err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, addrbook.ErrInvalidAddr) {
				t.Errorf("%s: %v is not ErrInvalidAddr", tc.in, err)
			}
			continue
		}
		if got.String() != tc.want {
			t.Errorf("%s: got %s want %s", tc.in, got, tc.want)
		}
	}
	if _, err := addrbook.Normalize(netip.AddrPort{}); !errors.Is(err, addrbook.ErrInvalidAddr) {
		t.Errorf("zero AddrPort: %v", err)
	}
}

// fakeClock returns successive seconds.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func TestAddDedupSourcesFlags(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := addrbook.New(addrbook.Options{Now: clk.now})
	a := netip.MustParseAddrPort("10.0.0.1:6881")
	mapped := netip.MustParseAddrPort("[::ffff:10.0.0.1]:6881")
	trk := addrbook.Tracker("http://127.0.0.1:1/announce")
	pexSrc := addrbook.PEX(netip.MustParseAddrPort("10.0.0.9:1"))
	steps := []struct {
		addr  netip.AddrPort
		src   string
		flags pex.Flags
		isNew bool
	}{
		{a, trk, 0, true},
		{mapped, addrbook.SourceDHT, 0, false},
		{a, trk, 0, false},
		{a, pexSrc, pex.Seed, false},
		{a, pexSrc, pex.PrefersEncryption, false},
	}
	for i, s := range steps {
		isNew, err := b.Add(s.addr, s.src, s.flags)
		if err != nil || isNew != s.isNew {
			t.Fatalf("step %d: new=%v err=%v, want new=%v", i, isNew, err, s.isNew)
		}
	}
	if b.Len() != 1 {
		t.Fatalf("Len %d, want 1", b.Len())
	}
	e, ok := b.Get(mapped)
	if !ok {
		t.Fatal("Get of the mapped form failed")
	}
	if got := fmt.Sprint(e.Sources()); got != fmt.Sprint([]string{trk, "dht", pexSrc}) {
		t.Errorf("sources %s", got)
	}
	if e.Flags != pex.Seed|pex.PrefersEncryption {
		t.Errorf("flags %v", e.Flags)
	}
	if s := e.Sightings[0]; s.Count != 2 || !s.First.Equal(time.Unix(1001, 0)) || !s.Last.Equal(time.Unix(1003, 0)) {
		t.Errorf("tracker sighting %+v", s)
	}
	if !e.FirstSeen.Equal(time.Unix(1001, 0)) || !e.HasSource("dht") || e.HasSource("incoming") {
		t.Errorf("entry %+v", e)
	}
	st := b.Stats()
	if st.Addrs != 1 || st.BySource[trk] != 1 || st.BySource["dht"] != 1 || st.BySource[pexSrc] != 1 {
		t.Errorf("stats %+v", st)
	}
	js, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"addr":"10.0.0.1:6881","sources":["tracker:http://127.0.0.1:1/announce","dht","pex:10.0.0.9:1"],"first_seen":"` +
		time.Unix(1001, 0).Format(time.RFC3339Nano) + `","flags":["encryption","seed"]}`
	if string(js) != want {
		t.Errorf("JSON\n got %s\nwant %s", js, want)
	}
}

func TestBounds(t *testing.T) {
	b := addrbook.New(addrbook.Options{Cap: 2, MaxSourcesPerAddr: 2})
	add := func(s, src string) error {
		_, err := b.Add(netip.MustParseAddrPort(s), src, 0)
		return err
	}
	if err := add("0.0.0.0:1", "dht"); !errors.Is(err, addrbook.ErrInvalidAddr) {
		t.Errorf("invalid: %v", err)
	}
	for _, s := range []string{"10.0.0.1:1", "10.0.0.2:1"} {
		if err := add(s, "dht"); err != nil {
			t.Fatal(err)
		}
	}
	if err := add("10.0.0.3:1", "dht"); !errors.Is(err, addrbook.ErrFull) {
		t.Errorf("over cap: %v", err)
	}
	// Known addresses still take new sightings when full.
	for _, src := range []string{"incoming", "magnet", "pex:1.1.1.1:1"} {
		if err := add("10.0.0.1:1", src); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := b.Get(netip.MustParseAddrPort("10.0.0.1:1"))
	if len(e.Sightings) != 2 || e.OtherSources != 2 {
		t.Errorf("sightings %d other %d, want 2 and 2", len(e.Sightings), e.OtherSources)
	}
	if st := b.Stats(); st.Invalid != 1 || st.Full != 1 || st.Addrs != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestCursor(t *testing.T) {
	b := addrbook.New(addrbook.Options{})
	b.Add(netip.MustParseAddrPort("10.0.0.1:1"), "dht", 0)
	c := b.Watch()
	ctx := context.Background()
	e, err := c.Next(ctx)
	if err != nil || e.Addr.String() != "10.0.0.1:1" {
		t.Fatalf("first: %v %v", e, err)
	}
	// Next waits for an address added later.
	got := make(chan netip.AddrPort)
	go func() {
		e, err := c.Next(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- e.Addr
	}()
	b.Add(netip.MustParseAddrPort("10.0.0.1:1"), "incoming", 0) // not new: no wake-up result
	b.Add(netip.MustParseAddrPort("10.0.0.2:2"), "dht", 0)
	if a := <-got; a.String() != "10.0.0.2:2" {
		t.Fatalf("second: %v", a)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	b.Add(netip.MustParseAddrPort("10.0.0.3:3"), "dht", 0)
	b.Close()
	if e, err := c.Next(ctx); err != nil || e.Addr.String() != "10.0.0.3:3" {
		t.Errorf("after close, pending address: %v %v", e, err)
	}
	if _, err := c.Next(ctx); !errors.Is(err, addrbook.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

// Many writers and readers at once: every reader sees every address once,
// in the book's order.
func TestConcurrent(t *testing.T) {
	b := addrbook.New(addrbook.Options{})
	const writers, per = 8, 200
	var readers sync.WaitGroup
	results := make([][]netip.AddrPort, 3)
	for r := range results {
		readers.Go(func() {
			c := b.Watch()
			for {
				e, err := c.Next(context.Background())
				if errors.Is(err, addrbook.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				results[r] = append(results[r], e.Addr)
			}
		})
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			for i := 0; i < per; i++ {
				// Every writer adds the same addresses under its own source.
				b.Add(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1000), fmt.Sprint("pex:w", w), 0)
				b.Stats()
			}
		})
	}
	wg.Wait()
	b.Close()
	readers.Wait()
	order := b.Entries()
	if len(order) != per {
		t.Fatalf("%d entries, want %d", len(order), per)
	}
	for r, got := range results {
		if len(got) != per {
			t.Fatalf("reader %d saw %d addresses", r, len(got))
		}
		for i := range got {
			if got[i] != order[i].Addr {
				t.Fatalf("reader %d: position %d is %v, book has %v", r, i, got[i], order[i].Addr)
			}
		}
	}
	for _, e := range order {
		if len(e.Sightings) != writers {
			t.Fatalf("%v has %d sources, want %d", e.Addr, len(e.Sightings), writers)
		}
	}
}
