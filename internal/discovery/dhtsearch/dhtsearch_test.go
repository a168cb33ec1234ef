package dhtsearch_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/discovery/dhtsearch"
	"github.com/swarmaudit/swarmaudit/internal/discovery/dhtsearch/dhttest"
)

// peerSet collects peers found by a Searcher and signals when all wanted
// ones are in.
type peerSet struct {
	mu   sync.Mutex
	got  map[netip.AddrPort]bool
	want map[netip.AddrPort]bool
	done chan struct{}
}

func newPeerSet(want []netip.AddrPort) *peerSet {
	ps := &peerSet{got: map[netip.AddrPort]bool{}, want: map[netip.AddrPort]bool{}, done: make(chan struct{})}
	for _, w := range want {
		ps.want[w] = true
	}
	return ps
}

func (ps *peerSet) add(a netip.AddrPort) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.got[a] = true
	for w := range ps.want {
		if !ps.got[w] {
			return
		}
	}
	select {
	case <-ps.done:
	default:
		close(ps.done)
	}
}

func TestSearchFindsAnnouncedPeers(t *testing.T) {
	nw := dhttest.Start(t, 8)
	ih := infohash.HashBytes([]byte("dhtsearch test"))
	// Two peers behind the same IP: the library's InMemory store would keep
	// only one of them.
	peers := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.5:6881"),
		netip.MustParseAddrPort("127.0.0.5:6882"),
		netip.MustParseAddrPort("127.0.0.6:51413"),
	}
	nw.Store(ih, peers, 1)
	ps := newPeerSet(peers)
	s, err := dhtsearch.New(dhtsearch.Config{
		InfoHash:    ih,
		Bootstrap:   nw.Addrs(1),
		Listen:      "127.0.0.1:0",
		Repeat:      200 * time.Millisecond,
		ResendDelay: 300 * time.Millisecond,
		OnPeer:      ps.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-ps.done:
	case <-ctx.Done():
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range peers {
		if !ps.got[p] {
			t.Errorf("peer %s not found; got %v", p, ps.got)
		}
	}
	st := s.Stats()
	if st.Traversals == 0 || st.PacketsSent == 0 || st.Values < int64(len(peers)) {
		t.Errorf("stats %+v: want traversals, packets and >= %d values", st, len(peers))
	}
}

func TestSearchAnnounces(t *testing.T) {
	nw := dhttest.Start(t, 4)
	ih := infohash.HashBytes([]byte("dhtsearch announce"))
	s, err := dhtsearch.New(dhtsearch.Config{
		InfoHash:     ih,
		Bootstrap:    nw.Addrs(1),
		Listen:       "127.0.0.1:0",
		AnnouncePort: 40001,
		Respond:      true,
		Repeat:       100 * time.Millisecond,
		ResendDelay:  300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	want := netip.MustParseAddrPort("127.0.0.1:40001")
	found := false
	// The library stores announces asynchronously; poll the stores, bounded
	// by the context.
	for !found && ctx.Err() == nil {
		for _, st := range nw.Stores {
			for _, p := range st.GetPeers(ih) {
				if ap, ok := netip.AddrFromSlice(p.IP); ok && netip.AddrPortFrom(ap.Unmap(), uint16(p.Port)) == want {
					found = true
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if !found {
		t.Fatalf("announce of %s not stored at any node", want)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want int
		err  bool
	}{
		{[]string{"127.0.0.1:6881"}, 1, false},
		{[]string{"[::1]:6881", "127.0.0.1:1"}, 2, false},
		{[]string{"nonsense", "127.0.0.1:0", "127.0.0.1:99999"}, 0, true},
		{nil, 0, true},
	} {
		got, err := dhtsearch.Resolve(context.Background(), tc.in)
		if (err != nil) != tc.err || len(got) != tc.want {
			t.Errorf("Resolve(%q) = %v, %v; want %d addrs, err %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, dhtsearch.ErrNoBootstrap) {
			t.Errorf("Resolve(%q) error %v is not ErrNoBootstrap", tc.in, err)
		}
	}
}

func TestPeerStore(t *testing.T) {
	ps := &dhtsearch.PeerStore{MaxPerHash: 3}
	ih := infohash.T{1}
	na := func(s string) krpc.NodeAddr {
		ap := netip.MustParseAddrPort(s)
		return krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
	}
	for _, s := range []string{"10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:1", "10.0.0.2:3", "10.0.0.3:4"} {
		ps.AddPeer(ih, na(s))
	}
	ps.AddPeer(ih, krpc.NodeAddr{IP: []byte{1, 2, 3}, Port: 5}) // bad IP: ignored
	ps.AddPeer(ih, na("10.0.0.9:1"))                            // evicts the oldest (10.0.0.1:2)
	var got []string
	for _, p := range ps.GetPeers(ih) {
		got = append(got, p.String())
	}
	want := []string{"10.0.0.2:3", "10.0.0.3:4", "10.0.0.9:1"}
	if len(got) != len(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v want %v", got, want)
		}
	}
	if len(ps.GetPeers(infohash.T{2})) != 0 {
		t.Error("peers for an unknown hash")
	}
}
