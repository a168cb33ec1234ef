package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/observation/watch"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// recordHello accepts one plaintext connection, answers the handshake
// advertising BEP 10 and BEP 6, and returns the reserved bytes our side
// sent and the payload of its extension handshake.
func recordHello(t *testing.T, ln net.Listener, ih [20]byte) (reserved [8]byte, ext []byte) {
	t.Helper()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	hs := make([]byte, 68)
	if _, err := io.ReadFull(c, hs); err != nil {
		t.Fatal(err)
	}
	copy(reserved[:], hs[20:28])
	reply := append([]byte{19}, pp.Protocol[1:]...)
	bits := pp.NewPeerExtensionBytes(pp.ExtensionBitLtep, pp.ExtensionBitFast)
	reply = append(reply, bits[:]...)
	reply = append(reply, ih[:]...)
	reply = append(reply, []byte("-XX0000-recorder0000")...)
	if _, err := c.Write(reply); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil || n > 1<<20 {
			t.Fatalf("read message: %v (length %d)", err, n)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatal(err)
		}
		if n >= 2 && pp.MessageType(msg[0]) == pp.Extended && msg[1] == 0 {
			return reserved, msg[2:]
		}
	}
	t.Fatal("no extension handshake among the first messages")
	return
}

// TestPrivateTorrentHello: for a private torrent (BEP 27) the handshake
// of a probe and of a watch does not set the DHT bit and their extension
// handshake offers no ut_pex; for a public one they do both.
func TestPrivateTorrentHello(t *testing.T) {
	for _, tc := range []struct {
		who     string
		private bool
	}{{"probe", false}, {"probe", true}, {"watch", false}, {"watch", true}} {
		private := tc.private
		t.Run(tc.who+" "+map[bool]string{false: "public", true: "private"}[private], func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ih := [20]byte{0x27}
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				addr := netip.MustParseAddrPort(ln.Addr().String())
				if tc.who == "watch" {
					_, err := watch.Watch(ctx, addr, watch.Options{InfoHash: ih, NumPieces: 4, Policy: peerwire.PolicyPlaintext, Private: private}, watch.Events{})
					done <- err
					return
				}
				_, err := Run(ctx, addr, Target{InfoHash: ih, NumPieces: 4,
					PieceSize: func(int) int64 { return 1 << 14 }, Verify: func(int, []byte) bool { return true }, Private: private},
					Options{Policy: peerwire.PolicyPlaintext, BitfieldOnly: true, Timeout: 3 * time.Second})
				done <- err
			}()
			reserved, ext := recordHello(t, ln, ih)
			ln.Close()
			if err := <-done; err != nil {
				t.Logf("probe: %v", err)
			}
			dht := reserved[7]&0x01 != 0
			pex := bytes.Contains(ext, []byte("ut_pex"))
			if dht == private || pex == private {
				t.Fatalf("private=%v: DHT bit %v, ut_pex offered %v (extension handshake %q)", private, dht, pex, ext)
			}
		})
	}
}

// TestPrivateTorrentAnswer: our answer to an incoming handshake for a
// private torrent does not set the DHT bit (BEP 27); for a public one it
// does.
func TestPrivateTorrentAnswer(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(map[bool]string{false: "public", true: "private"}[private], func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ih := [20]byte{0x28}
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if c, err := watch.Accept(ctx, raw, watch.Options{InfoHash: ih, Private: private}); err == nil {
					c.Close()
				}
			}()
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			hs := append([]byte{19}, pp.Protocol[1:]...)
			bits := pp.NewPeerExtensionBytes(pp.ExtensionBitLtep, pp.ExtensionBitDht)
			hs = append(append(append(hs, bits[:]...), ih[:]...), []byte("-XX0000-initiator000")...)
			if _, err := c.Write(hs); err != nil {
				t.Fatal(err)
			}
			answer := make([]byte, 68)
			if _, err := io.ReadFull(c, answer); err != nil {
				t.Fatal(err)
			}
			if dht := answer[27]&0x01 != 0; dht == private {
				t.Fatalf("private=%v: our answer's DHT bit %v", private, dht)
			}
		})
	}
}
