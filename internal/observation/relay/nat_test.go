package relay

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
	"github.com/swarmaudit/swarmaudit/internal/wire/utp"
)

// TestHolepunchReachesNATedLeecher: in a lab of the test's own, a real
// libtorrent leecher sits behind a NAT (its own netns behind a router
// netns that masquerades and lets nothing in) and downloads from a real
// libtorrent seeder on the lab, over uTP. The auditor cannot connect to
// the leecher, over TCP or uTP; through the seeder as relay (BEP 55) it
// reaches it, and a probe over the punched uTP connection reads its
// piece set.
func TestHolepunchReachesNATedLeecher(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent), "opentracker", "nft")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := labnet.ForTest(t, ctx, "sahp", 223)
	relayHost, err := nw.AddHost(ctx, "relay", labnet.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	natHost, err := nw.AddNATHost(ctx, "leech", labnet.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := testclients.LaunchOpentracker(ctx, testclients.OpentrackerOptions{IP: relayHost.IP.String(), Port: 6969, Netns: relayHost.Netns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Stop)
	dir := t.TempDir()
	payload := testclients.MakePayload(t, filepath.Join(dir, "seed"), 16<<20, 47)
	tpath, ih := testclients.MakeTorrent(t, payload, 256<<10, []string{tr.HTTP}, false)
	if err := tr.AllowHashes(ctx, ih); err != nil {
		t.Fatal(err)
	}
	tor, err := torrentmeta.Load(tpath)
	if err != nil {
		t.Fatal(err)
	}
	seeder := testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: filepath.Dir(payload), Seed: true,
		Netns: relayHost.Netns, IP: relayHost.IP.String(), Port: 6881, UTP: true,
	})
	testclients.Start(ctx, t, testclients.Options{
		Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: filepath.Join(dir, "leech"),
		Netns: natHost.Netns, IP: natHost.IP.String(), Port: 6881, UTPOnly: true, DownloadLimitKiB: 256,
	})
	// What the lab sees of the leecher: its router's address, and the port
	// the router keeps when it masquerades (the same, when free).
	leecher := netip.AddrPortFrom(natHost.Public, 6881)

	sock, err := utp.Listen("udp4", netip.AddrPortFrom(nw.BridgeIP, 0).String(), utp.Options{Accept: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	cfg := peerwire.Config{InfoHash: tor.InfoHash, PeerID: peerid.New(peerid.Prefix), Network: peerwire.Network{UTP: sock}}
	target := probe.Target{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, PieceSize: tor.PieceSize, Verify: tor.VerifyPiece}

	direct, err := probe.Run(ctx, leecher, target, probe.Options{Timeout: 8 * time.Second, BitfieldOnly: true, Dialer: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if direct.Outcome == probe.OutcomeOK {
		t.Fatalf("the leecher behind the NAT was reached directly over %s: no NAT", direct.Transport)
	}
	t.Logf("direct: %s (%s)", direct.Outcome, direct.Error)

	// The leecher connects to the seeder once its announce names it:
	// until then the relay answers that it knows no such peer.
	var ep netip.AddrPort
	for attempt := 1; ; attempt++ {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		ep, err = Rendezvous(rctx, seeder.Addr, leecher, cfg, peerid.OurName)
		rcancel()
		var refused *RefusedError
		if err == nil || !errors.As(err, &refused) || attempt == 30 {
			break
		}
		t.Logf("attempt %d: %v", attempt, err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	if err != nil {
		t.Fatalf("rendezvous: %v", err)
	}
	t.Logf("the relay says: connect to %s", ep)
	// Both sides now open a uTP connection. Ours reaches the leecher when
	// its NAT kept its port; the router may have had to pick another
	// (our direct attempt left a mapping in its way), and then the
	// leecher's connection to us is the one that comes through.
	dialed := make(chan *probe.Result, 1)
	go func() {
		r, _ := probe.Run(ctx, ep, target, probe.Options{Timeout: 10 * time.Second, BitfieldOnly: true,
			Dialer: peerwire.Config{Network: peerwire.Network{UTP: sock, Transport: peerwire.TransportUTP}}})
		dialed <- r
	}()
	accepted := make(chan *peerwire.Conn, 1)
	acceptErr := make(chan error, 1)
	acceptDone := make(chan struct{})
	defer func() { sock.Close(); <-acceptDone }() // the goroutine ends before the test
	go func() {
		defer close(acceptDone)
		raw, err := sock.Accept()
		if err != nil {
			return
		}
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		defer acancel()
		c, err := peerwire.Accept(actx, raw, peerwire.AcceptConfig{
			PeerID: cfg.PeerID, Known: func(h infohash.T) bool { return h == tor.InfoHash },
			InfoHash: func(yield func(infohash.T) bool) { yield(tor.InfoHash) }, AllowPlaintext: true, AllowMSEPlaintext: true,
		})
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c
	}()
	select {
	case r := <-dialed:
		t.Logf("our connection through the hole: %s over %s (%s), peer id %q, %d of %d pieces: %s", r.Outcome, r.Transport, r.Encryption, r.PeerID, r.PiecesHave, r.PiecesTotal, r.Error)
		if r.Outcome == probe.OutcomeOK && r.Transport == "utp" {
			return
		}
		select {
		case c := <-accepted:
			checkLeecher(t, c, natHost.Public, tor.NumPieces)
		case err := <-acceptErr:
			t.Fatalf("the leecher's connection came, its handshake failed: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("neither our connection nor the leecher's came through the NAT")
		}
	case c := <-accepted:
		checkLeecher(t, c, natHost.Public, tor.NumPieces)
	case err := <-acceptErr:
		t.Fatalf("the leecher's connection came, its handshake failed: %v", err)
	}
}

// checkLeecher checks that c is the NATed libtorrent's, handshaken over
// uTP from its router's address, and that it states its piece set.
func checkLeecher(t *testing.T, c *peerwire.Conn, public netip.Addr, numPieces int) {
	t.Helper()
	defer c.Close()
	t.Logf("the leecher's connection through the hole: from %s over %s (%s), peer id %q", c.Remote, c.Transport, c.Method, c.PeerID[:8])
	if c.Transport != peerwire.TransportUTP || c.Remote.Addr() != public || string(c.PeerID[:3]) != "-LT" {
		t.Fatalf("incoming connection from %s over %s, peer id %q: want the leecher's router, uTP, libtorrent", c.Remote, c.Transport, c.PeerID[:8])
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 100 {
		m, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("reading the leecher's piece set: %v", err)
		}
		switch m.Type {
		case pp.Bitfield:
			bf, err := bitfield.FromBools(m.Bitfield, numPieces)
			if err != nil {
				t.Fatalf("its bitfield: %v", err)
			}
			t.Logf("its bitfield: %d of %d pieces", bf.Count(), numPieces)
			return
		case pp.HaveNone, pp.HaveAll:
			t.Logf("its piece set: %v", m.Type)
			return
		}
	}
	t.Fatal("no piece set in 100 messages")
}
