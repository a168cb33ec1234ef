package watch

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/metadata"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

func simPeer(t *testing.T, cfg swarmsim.PeerConfig) (*swarmsim.Peer, *torrentmeta.Torrent) {
	t.Helper()
	payload, tor, err := swarmsim.NewPayload("w.bin", 1<<20, 32<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Payload = payload
	if cfg.Have.Len() == 0 {
		cfg.Have = bitfield.New(tor.NumPieces)
	}
	p, err := swarmsim.StartPeer("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, tor
}

// TestWatchSeesHavesAndPEX: an idle connection receives the bitfield, each
// HAVE as the peer gains pieces, and its PEX list.
func TestWatchSeesHavesAndPEX(t *testing.T) {
	others := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.5:6881"), netip.MustParseAddrPort("[::1]:6882")}
	for _, enc := range []swarmsim.Encryption{swarmsim.EncRequired, swarmsim.EncDisabled} {
		t.Run(string(enc), func(t *testing.T) {
			p, tor := simPeer(t, swarmsim.PeerConfig{Encryption: enc, PEX: others})
			start := bitfield.New(tor.NumPieces)
			start.Set(0)
			p.Gain(0)
			var (
				mu       sync.Mutex
				haves    []int
				bf       bitfield.Bitfield
				pexAddrs []netip.AddrPort
				method   peerwire.Method
			)
			connected := make(chan struct{})
			gotAll := make(chan struct{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			type result struct {
				sum Summary
				err error
			}
			done := make(chan result, 1)
			go func() {
				sum, err := Watch(ctx, p.Addr(), Options{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, Policy: peerwire.PolicyAuto}, Events{
					Connected: func(c *peerwire.Conn, ext *peerwire.ExtHandshake) {
						method = c.Method
						close(connected)
					},
					Bitfield: func(_ time.Time, b bitfield.Bitfield) { mu.Lock(); bf = b; mu.Unlock() },
					Have: func(_ time.Time, i int) {
						mu.Lock()
						haves = append(haves, i)
						if len(haves) == 3 {
							close(gotAll)
						}
						mu.Unlock()
					},
					PEX: func(_ time.Time, m pex.Message) {
						mu.Lock()
						for _, a := range m.Added {
							pexAddrs = append(pexAddrs, a.Addr)
						}
						mu.Unlock()
					},
				})
				done <- result{sum, err}
			}()
			select {
			case <-connected:
			case <-ctx.Done():
				t.Fatal("never connected")
			}
			time.Sleep(200 * time.Millisecond) // let the peer register the connection
			for _, i := range []int{5, 7, 9} {
				p.Gain(i)
			}
			select {
			case <-gotAll:
			case <-ctx.Done():
				t.Fatalf("HAVEs seen: %v", haves)
			}
			cancel()
			r := <-done
			if r.err != nil {
				t.Fatalf("watch ended with %v", r.err)
			}
			// the watch lasted at least the 200 ms slept above
			if r.sum.Haves != 3 || r.sum.Method != method || r.sum.Connected < 200*time.Millisecond {
				t.Fatalf("summary %+v, want 3 HAVEs by %s over at least 200 ms", r.sum, method)
			}
			mu.Lock()
			defer mu.Unlock()
			if !bf.Has(0) || bf.Count() != 1 {
				t.Fatalf("bitfield %v", bf.Indices())
			}
			if len(pexAddrs) != 2 || pexAddrs[0] != others[0] || pexAddrs[1] != others[1] {
				t.Fatalf("pex %v", pexAddrs)
			}
			if want := map[swarmsim.Encryption]peerwire.Method{swarmsim.EncRequired: peerwire.MethodRC4, swarmsim.EncDisabled: peerwire.MethodPlaintext}[enc]; method != want {
				t.Fatalf("method %s, want %s", method, want)
			}
		})
	}
}

func TestFetchMetadata(t *testing.T) {
	payload, tor, err := swarmsim.NewPayload("m.bin", 3<<20, 16<<10, 9) // 192 pieces: 3,840 bytes of hashes + name
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serve := func(info []byte) netip.AddrPort {
		p, err := swarmsim.StartPeer("127.0.0.1:0", swarmsim.PeerConfig{Payload: payload, Have: bitfield.Full(tor.NumPieces), InfoBytes: info, Encryption: swarmsim.EncRequired})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p.Addr()
	}
	got, err := FetchMetadata(ctx, serve(tor.InfoBytes), Options{InfoHash: tor.InfoHash})
	if err != nil {
		t.Fatal(err)
	}
	if got.InfoHash != tor.InfoHash || got.NumPieces != tor.NumPieces {
		t.Fatalf("got %x with %d pieces", got.InfoHash, got.NumPieces)
	}
	// A peer serving metadata of another torrent is caught by the hash.
	_, other, _ := swarmsim.NewPayload("other.bin", 3<<20, 16<<10, 10)
	if _, err := FetchMetadata(ctx, serve(other.InfoBytes), Options{InfoHash: tor.InfoHash}); !errors.Is(err, metadata.ErrHashMismatch) {
		t.Fatalf("wrong metadata: err = %v", err)
	}
	if _, err := FetchMetadata(ctx, serve(nil), Options{InfoHash: tor.InfoHash}); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("no metadata: err = %v", err)
	}
}
