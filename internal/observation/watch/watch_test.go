package watch

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

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

// TestWatchKeepsTime: the watch's one goroutine sends keep-alives and
// ticks on time while it waits for messages, and still reads the messages
// that arrive between them (one split across a deadline included).
func TestWatchKeepsTime(t *testing.T) {
	ih := infohash.T{7}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	keepalives := make(chan struct{}, 100)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		defer raw.Close()
		// A plaintext peer without extensions, by hand, so that it can
		// split a message.
		hs := make([]byte, 68)
		if _, err := io.ReadFull(raw, hs); err != nil {
			return
		}
		copy(hs[20:28], make([]byte, 8))
		hs[60] = 0xAA // its own peer id
		raw.Write(hs)
		have, _ := pp.Message{Type: pp.Have, Index: 3}.MarshalBinary()
		go func() {
			// A HAVE in two halves, 150 ms apart: the watch's deadlines
			// (every 50-70 ms) pass in the middle of it.
			time.Sleep(100 * time.Millisecond) // pacing the peer, not synchronisation
			raw.Write(have[:5])
			time.Sleep(150 * time.Millisecond)
			raw.Write(have[5:])
		}()
		for {
			var l [4]byte
			if _, err := io.ReadFull(raw, l[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(l[:])
			if n == 0 {
				keepalives <- struct{}{}
				continue
			}
			if _, err := io.CopyN(io.Discard, raw, int64(n)); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ticks, haves atomic.Int32
	gotHave := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := Watch(ctx, netip.MustParseAddrPort(ln.Addr().String()), Options{
			InfoHash: ih, NumPieces: 8, Policy: peerwire.PolicyPlaintext, KeepAlive: 50 * time.Millisecond, TickEvery: 70 * time.Millisecond,
		}, Events{Tick: func(time.Time) { ticks.Add(1) }, Have: func(_ time.Time, i int) {
			if i == 3 {
				haves.Add(1)
				gotHave <- struct{}{}
			}
		}})
		done <- err
	}()
	for range 5 {
		select {
		case <-keepalives:
		case <-ctx.Done():
			t.Fatal("fewer than 5 keep-alives")
		}
	}
	select {
	case <-gotHave:
	case <-ctx.Done():
		t.Fatal("the split HAVE never arrived")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
	if ticks.Load() < 3 || haves.Load() != 1 {
		t.Fatalf("%d ticks, %d HAVEs of piece 3", ticks.Load(), haves.Load())
	}
}

// TestStopperEndsTheWatch: a watch that follows no context of its own ends
// at once when stopped, and one stopped before it connected does not start.
func TestStopperEndsTheWatch(t *testing.T) {
	p, tor := simPeer(t, swarmsim.PeerConfig{})
	o := Options{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, Policy: peerwire.PolicyPlaintext}
	t.Run("while connected", func(t *testing.T) {
		o.Stopper = &Stopper{}
		connected := make(chan struct{})
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := Watch(context.Background(), p.Addr(), o, Events{Connected: func(*peerwire.Conn, *peerwire.ExtHandshake) { close(connected) }})
			done <- err
		}()
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			t.Fatal("never connected")
		}
		o.Stopper.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("stopped watch ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the stopped watch went on")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("before connecting", func(t *testing.T) {
		o.Stopper = &Stopper{}
		o.Stopper.Stop()
		sum, err := Watch(context.Background(), p.Addr(), o, Events{Connected: func(*peerwire.Conn, *peerwire.ExtHandshake) { t.Error("a stopped watch connected") }})
		if err != nil || sum.Messages != 0 {
			t.Fatalf("%+v, %v", sum, err)
		}
	})
}
