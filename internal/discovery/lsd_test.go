package discovery_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// TestLSDFindsLocalPeers: with LSD on, discovery records a real libtorrent
// on the local network (a lab host in a namespace of the test's own, LSD
// on) with the source "lsd"; for a private torrent it never runs LSD (BEP
// 27), so with no other source there is nothing to run.
func TestLSDFindsLocalPeers(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nw := labnet.ForTest(t, ctx, "sadlsd", 221)
	h, err := nw.AddHost(ctx, "lt", labnet.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	payload := testclients.MakePayload(t, t.TempDir(), 1<<20, 43)
	torrent, ih := testclients.MakeTorrent(t, payload, 64<<10, nil, false)

	private, err := discovery.New(discovery.Config{InfoHash: ih, Private: true, LSD: true, LSDInterface: nw.Bridge, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := private.Run(ctx); !errors.Is(err, discovery.ErrNoSource) {
		t.Fatalf("a private torrent with only LSD: %v, want ErrNoSource", err)
	}

	d, err := discovery.New(discovery.Config{InfoHash: ih, LSD: true, LSDInterface: nw.Bridge, Port: 6881})
	if err != nil {
		t.Fatal(err)
	}
	dctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	c := testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Libtorrent, TorrentFile: torrent, DataDir: filepath.Dir(payload), Seed: true,
		Netns: h.Netns, IP: h.IP.String(), Port: 6881, LSD: true,
	})
	e, err := d.Book().Watch().Next(ctx)
	stop()
	if rerr := <-done; rerr != nil {
		t.Errorf("discovery: %v", rerr)
	}
	if err != nil {
		t.Fatalf("no peer found by LSD: %v", err)
	}
	if e.Addr != c.Addr || len(e.Sightings) == 0 || e.Sightings[0].Source != addrbook.SourceLSD {
		t.Fatalf("found %s from %+v; libtorrent listens on %s", e.Addr, e.Sightings, c.Addr)
	}
}
