package frompeers

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestMagnetThenPEXThenIncoming: with only an info hash, the metadata comes
// from the first peer, a watch on it learns two addresses by PEX, and an
// incoming connection is recorded at the listen port it announces.
func TestMagnetThenPEXThenIncoming(t *testing.T) {
	payload, tor, err := swarmsim.NewPayload("fp.bin", 1<<20, 32<<10, 5)
	if err != nil {
		t.Fatal(err)
	}
	gossip := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.9:7001"), netip.MustParseAddrPort("127.0.0.9:7002")}
	seed, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{
		Payload: payload, Have: bitfield.Full(tor.NumPieces), InfoBytes: tor.InfoBytes, PEX: gossip, Encryption: swarmsim.EncRequired,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()

	book := addrbook.New(addrbook.Options{})
	var mu sync.Mutex
	var incoming []netip.AddrPort
	var fetched *torrentmeta.Torrent
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	done := make(chan Stats, 1)
	go func() {
		st, _ := Run(ctx, Config{
			InfoHash: tor.InfoHash, PEX: true, Listener: ln, Book: book, AddPEX: book.AddPEX,
			AddIncoming: func(a netip.AddrPort) { mu.Lock(); incoming = append(incoming, a); mu.Unlock() },
			OnMetadata:  func(t *torrentmeta.Torrent) { mu.Lock(); fetched = t; mu.Unlock() },
		})
		done <- st
	}()
	book.Add(seed.Addr(), addrbook.SourceMagnet, 0)

	// Wait for PEX to deliver both gossip addresses.
	for {
		if _, ok := book.Get(gossip[1]); ok {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("PEX addresses never arrived; book has %d", book.Len())
		}
		time.Sleep(50 * time.Millisecond)
	}
	e, _ := book.Get(gossip[0])
	if !e.HasSource(addrbook.PEX(seed.Addr())) {
		t.Fatalf("sources %v", e.Sources())
	}

	// An incoming peer announcing listen port 51413 in its extension handshake.
	c, err := peerwire.Dial(ctx, netip.MustParseAddrPort(ln.Addr().String()), peerwire.Config{InfoHash: tor.InfoHash, Policy: peerwire.PolicyRequire})
	if err != nil {
		t.Fatal(err)
	}
	payloadExt, _ := bencode.Marshal(map[string]any{"m": map[string]int{"ut_pex": 1}, "p": 51413})
	if err := c.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: payloadExt}); err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort("127.0.0.1:51413")
	for {
		mu.Lock()
		got := len(incoming) > 0 && incoming[0] == want
		mu.Unlock()
		if got {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("incoming peer not recorded: %v", incoming)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	cancel()
	st := <-done
	mu.Lock()
	defer mu.Unlock()
	if fetched == nil || fetched.InfoHash != tor.InfoHash {
		t.Fatal("metadata not fetched")
	}
	if st.MetadataFrom != seed.Addr().String() || st.PEXAdded != 2 || st.Incoming != 1 {
		t.Fatalf("stats %+v", st)
	}
}
