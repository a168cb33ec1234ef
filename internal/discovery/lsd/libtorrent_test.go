package lsd

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// TestRunFindsLibtorrent: a real libtorrent with LSD on, in a network
// namespace of the test's own joined to a bridge (labnet), multicasts its
// announces; Run, listening on that bridge, names its listen address, and
// nothing for another info hash. Our own announces go out on the bridge
// only (TTL 1), and Run does not report them to itself.
func TestRunFindsLibtorrent(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nw := labnet.ForTest(t, ctx, "salsd", 220)
	h, err := nw.AddHost(ctx, "lt", labnet.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	bridge, err := net.InterfaceByName(nw.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	payload := testclients.MakePayload(t, filepath.Join(dir, "seed"), 1<<20, 41)
	torrent, ih := testclients.MakeTorrent(t, payload, 64<<10, nil, false)

	found := make(chan netip.AddrPort, 16)
	other := make(chan netip.AddrPort, 16)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	for _, l := range []struct {
		ih  infohash.T
		out chan netip.AddrPort
	}{{ih, found}, {infohash.T{0xee}, other}} {
		go func() {
			done <- Run(rctx, Config{InfoHash: l.ih, Port: 6881, Interface: bridge}, func(a netip.AddrPort) { l.out <- a })
		}()
	}
	c := testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Libtorrent, TorrentFile: torrent, DataDir: filepath.Dir(payload), Seed: true,
		Netns: h.Netns, IP: h.IP.String(), Port: 6881, LSD: true,
	})
	select {
	case a := <-found:
		if a != c.Addr {
			t.Errorf("LSD named %s; libtorrent listens on %s", a, c.Addr)
		}
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-ctx.Done():
		t.Fatal("no LSD announce of libtorrent's in 90 s")
	}
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	select {
	case a := <-other:
		t.Errorf("a listener for another info hash reported %s", a)
	default:
	}
}
