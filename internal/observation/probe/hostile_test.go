package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// hostilePeer accepts connections and runs script on each. If handshake is
// set it first answers a plain BitTorrent handshake (without extension bits).
func hostilePeer(t *testing.T, handshake bool, ih [20]byte, script func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				go func() { <-done; c.Close() }()
				if handshake {
					var b [68]byte
					if _, err := io.ReadFull(c, b[:]); err != nil {
						return
					}
					reply := []byte(pp.Protocol)
					reply = append(reply, make([]byte, 8)...)
					reply = append(reply, ih[:]...)
					reply = append(reply, "-HO0001-hostilepeer1"...)
					if _, err := c.Write(reply); err != nil {
						return
					}
				}
				script(c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func frame(typ byte, payload ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)+1))
	return append(append(b, typ), payload...)
}

func TestProbeHostilePeers(t *testing.T) {
	_, target := testPayload(10*64<<10, 64<<10) // 10 pieces: bitfield is 2 bytes
	fullBitfield := frame(byte(pp.Bitfield), 0xff, 0xc0)
	drain := func(c net.Conn) { io.Copy(io.Discard, c) }
	tests := []struct {
		name      string
		handshake bool
		policy    peerwire.Policy
		script    func(net.Conn)
		want      Outcome
	}{
		{"length prefix above the cap", true, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Write(binary.BigEndian.AppendUint32(nil, 1<<30))
			drain(c)
		}, OutcomeProtocolError},
		{"bitfield of the wrong length", true, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Write(frame(byte(pp.Bitfield), 0xff, 0xc0, 0x00))
			drain(c)
		}, OutcomeProtocolError},
		{"bitfield with spare bits set", true, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Write(frame(byte(pp.Bitfield), 0xff, 0xff))
			drain(c)
		}, OutcomeProtocolError},
		{"have for a piece past the end", true, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Write(frame(byte(pp.Have), 0, 0, 0, 10))
			drain(c)
		}, OutcomeProtocolError},
		{"piece we did not request", true, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Write(fullBitfield)
			c.Write(frame(byte(pp.Unchoke)))
			c.Write(frame(byte(pp.Piece), append([]byte{0, 0, 0, 3, 0, 0, 0, 0}, make([]byte, 100)...)...))
			drain(c)
		}, OutcomeProtocolError},
		{"stream of keep-alives after a bitfield", true, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Write(fullBitfield)
			for i := 0; i < 1000; i++ {
				if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}, OutcomeChoked},
		{"accepts TCP and never speaks", false, peerwire.PolicyPlaintext, drain, OutcomeTimeout},
		{"accepts TCP and never speaks, auto", false, peerwire.PolicyAuto, drain, OutcomeTimeout},
		{"garbage instead of MSE", false, peerwire.PolicyRequire, func(c net.Conn) {
			junk := make([]byte, 2048)
			for i := range junk {
				junk[i] = byte(i * 7)
			}
			c.Write(junk)
			drain(c)
		}, OutcomeHandshakeFailed},
		{"closes during the handshake", false, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Read(make([]byte, 10))
		}, OutcomeEncryptionRequired},
		// Hanging up on MSE and on plaintext is no sign of requiring
		// encryption (such a peer answers MSE): libtorrent taking uTP only
		// does this over TCP.
		{"closes both handshakes, auto", false, peerwire.PolicyAuto, func(c net.Conn) {
			c.Read(make([]byte, 10))
		}, OutcomeHandshakeFailed},
		{"unknown message types are skipped", true, peerwire.PolicyPlaintext, func(c net.Conn) {
			c.Write(frame(99, 1, 2, 3))
			c.Write(frame(byte(pp.HaveNone))) // not allowed without fast, but harmless
			drain(c)
		}, OutcomeOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := hostilePeer(t, tt.handshake, target.InfoHash, tt.script)
			ctx := context.Background()
			r, err := Run(ctx, addr, target, Options{Policy: tt.policy, Timeout: 1500 * time.Millisecond, InitialWait: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != tt.want {
				t.Fatalf("outcome %s (%s), want %s", r.Outcome, r.Error, tt.want)
			}
			if tt.want == OutcomeTimeout && !r.TCPConnected {
				t.Fatal("a peer that accepted TCP is not marked tcp_connected")
			}
			if r.DurationMS > 10000 { // a hang check, not a speed goal
				t.Fatalf("probe overran its timeout: %.0f ms", r.DurationMS)
			}
		})
	}
}

// TestLaterPieceSets: a bitfield, HaveAll or HaveNone after the first piece
// set is an update when it only adds pieces (aria2 sends one instead of 20
// or more HAVEs), recorded as HAVEs; one that drops pieces is a protocol
// error. The snapshot stays the first set, as stated.
func TestLaterPieceSets(t *testing.T) {
	_, target := testPayload(10*64<<10, 64<<10) // 10 pieces: bitfield is 2 bytes
	tests := []struct {
		name      string
		msgs      [][]byte
		haves     []int
		held      int
		errSubstr string
	}{
		{"bitfield that adds pieces", [][]byte{frame(byte(pp.Bitfield), 0x80, 0), frame(byte(pp.Bitfield), 0xe0, 0)}, []int{1, 2}, 3, ""},
		{"same bitfield again", [][]byte{frame(byte(pp.Bitfield), 0x80, 0), frame(byte(pp.Bitfield), 0x80, 0)}, nil, 1, ""},
		{"HaveAll after a bitfield", [][]byte{frame(byte(pp.Bitfield), 0xff, 0), frame(byte(pp.HaveAll))}, []int{8, 9}, 10, ""},
		{"HAVE, then a bitfield adding more", [][]byte{frame(byte(pp.HaveNone)), frame(byte(pp.Have), 0, 0, 0, 4), frame(byte(pp.Bitfield), 0x08, 0x40)}, []int{4, 9}, 2, ""},
		{"bitfield dropping pieces", [][]byte{frame(byte(pp.Bitfield), 0xc0, 0), frame(byte(pp.Bitfield), 0x80, 0)}, nil, 0, "bitfield after the piece set drops 1 pieces"},
		{"HaveNone after HaveAll", [][]byte{frame(byte(pp.HaveAll)), frame(byte(pp.HaveNone))}, nil, 0, "HaveNone after the piece set drops 10 pieces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var data []byte
			for _, m := range tc.msgs {
				data = append(data, m...)
			}
			s := &session{t: target, r: &Result{PiecesTotal: target.NumPieces}, start: time.Now(), have: bitfield.New(target.NumPieces)}
			s.conn = peerwire.NewStreamConn(data, peerwire.DefaultMaxMessage)
			var err error
			for range tc.msgs {
				if err = s.step(time.Now().Add(time.Second)); err != nil {
					break
				}
			}
			if tc.errSubstr != "" {
				if err == nil || !errors.Is(err, peerwire.ErrProtocol) || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("err %v, want a protocol error with %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, h := range s.r.Haves {
				got = append(got, h.Piece)
			}
			if !slices.Equal(got, tc.haves) || s.have.Count() != tc.held {
				t.Fatalf("haves %v, held %d; want %v and %d", got, s.have.Count(), tc.haves, tc.held)
			}
			if tc.msgs[0][4] != byte(pp.Bitfield) {
				return
			}
			if first := tc.msgs[0][5:]; !slices.Equal(s.r.SnapshotBitfield, first) {
				t.Fatalf("snapshot %x, want the first set %x", s.r.SnapshotBitfield, first)
			}
		})
	}
}

// TestAllowedFastIsNoCapacity: blocks of allowed-fast pieces (BEP 6) that a
// choking peer trickles out do not count in the throughput; what it sends
// once it unchokes does, and the unchoke time is recorded when it comes.
func TestAllowedFastIsNoCapacity(t *testing.T) {
	payload, target := testPayload(10*64<<10, 64<<10)
	// serve answers requests: blocks of allowed-fast pieces every 100 ms
	// while choking, the rest at once after unchokeAfter (never when 0).
	serve := func(unchokeAfter time.Duration) func(net.Conn) {
		return func(c net.Conn) {
			c.Write(frame(byte(pp.Bitfield), 0xff, 0xc0))
			c.Write(frame(byte(pp.AllowedFast), 0, 0, 0, 0))
			c.Write(frame(byte(pp.AllowedFast), 0, 0, 0, 1))
			var mu sync.Mutex // the writes of the unchoke timer and the loop
			unchoked := false
			if unchokeAfter > 0 {
				timer := time.AfterFunc(unchokeAfter, func() {
					mu.Lock()
					defer mu.Unlock()
					unchoked = true
					c.Write(frame(byte(pp.Unchoke)))
				})
				defer timer.Stop()
			}
			var hdr [4]byte
			for {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint32(hdr[:]))
				if _, err := io.ReadFull(c, msg); err != nil {
					return
				}
				if len(msg) != 13 || msg[0] != byte(pp.Request) {
					continue
				}
				piece, begin, n := binary.BigEndian.Uint32(msg[1:]), binary.BigEndian.Uint32(msg[5:]), binary.BigEndian.Uint32(msg[9:])
				mu.Lock()
				now := unchoked
				mu.Unlock()
				if !now {
					if piece > 1 {
						continue
					}
					time.Sleep(100 * time.Millisecond)
				}
				off := int64(piece)*payload.PieceLength + int64(begin)
				mu.Lock()
				c.Write(frame(byte(pp.Piece), append(msg[1:9:9], payload.Data[off:off+int64(n)]...)...))
				mu.Unlock()
			}
		}
	}
	for _, tc := range []struct {
		name         string
		unchokeAfter time.Duration
		minRate      float64 // bytes/s; 0: no throughput at all
	}{
		{"never unchokes", 0, 0},
		{"unchokes after a second", time.Second, 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostilePeer(t, true, target.InfoHash, serve(tc.unchokeAfter))
			r, err := Run(context.Background(), addr, target, Options{Policy: peerwire.PolicyPlaintext, MaxBytes: 10 * 64 << 10,
				Timeout: 4 * time.Second, InitialWait: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if r.AllowedFast != 2 || r.BytesDownloaded < 64<<10 {
				t.Fatalf("allowed fast %d, downloaded %d: want 2 pieces allowed and some served (%s: %s)", r.AllowedFast, r.BytesDownloaded, r.Outcome, r.Error)
			}
			if tc.minRate == 0 {
				if r.ThroughputBytesPerSec != 0 || r.UnchokeMS != 0 {
					t.Fatalf("throughput %.0f B/s, unchoke at %v ms: want none from allowed-fast blocks alone", r.ThroughputBytesPerSec, r.UnchokeMS)
				}
				return
			}
			if r.ThroughputBytesPerSec < tc.minRate || r.UnchokeMS < 900 {
				t.Fatalf("throughput %.0f B/s (want ≥ %.0f), unchoke at %v ms (want about 1000)", r.ThroughputBytesPerSec, tc.minRate, r.UnchokeMS)
			}
		})
	}
}
