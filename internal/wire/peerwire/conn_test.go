package peerwire

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"
)

var testIH = infohash.T{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}

// listener accepts connections with Accept under the given settings and
// hands each established Conn to serve (or records the error).
func listener(t testing.TB, ac AcceptConfig, serve func(*Conn)) (netip.AddrPort, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if ac.Known == nil {
		ac.Known = func(ih infohash.T) bool { return ih == testIH }
		ac.InfoHash = func(yield func(infohash.T) bool) { yield(infohash.T{9}); yield(testIH) }
	}
	errs := make(chan error, 16)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, err := Accept(ctx, raw, ac)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), errs
}

func TestDialAcceptPolicies(t *testing.T) {
	tests := []struct {
		name       string
		policy     Policy
		plain, mse bool // what the receiver allows: plaintext handshakes, MSE-plaintext
		want       Method
		wantErr    error
	}{
		{"auto vs rc4-only receiver", PolicyAuto, false, false, MethodRC4, nil},
		{"auto vs permissive receiver picks mse-plaintext", PolicyAuto, true, true, MethodMSEPlaintext, nil},
		{"require vs rc4-only", PolicyRequire, false, false, MethodRC4, nil},
		{"require offers only rc4", PolicyRequire, true, true, MethodRC4, nil},
		{"plaintext vs plaintext-allowing", PolicyPlaintext, true, false, MethodPlaintext, nil},
		{"plaintext vs encryption-required", PolicyPlaintext, false, false, "", ErrEncryptionRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := listener(t, AcceptConfig{PeerID: [20]byte{'S'}, AllowPlaintext: tt.plain, AllowMSEPlaintext: tt.mse},
				func(c *Conn) {
					c.WriteMessages(pp.Message{Type: pp.HaveAll})
					c.ReadMessage() // until the dialler hangs up
				})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, addr, Config{InfoHash: testIH, PeerID: [20]byte{'C'}, Policy: tt.policy})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Method != tt.want {
				t.Fatalf("method = %s, want %s", c.Method, tt.want)
			}
			if c.PeerID[0] != 'S' || !c.SupportsExtended() || !c.SupportsFast() {
				t.Fatalf("handshake fields: id=%q reserved=%v", c.PeerID, c.Reserved)
			}
			m, err := c.ReadMessage()
			if err != nil || m.Type != pp.HaveAll {
				t.Fatalf("first message = %+v, %v", m, err)
			}
			// Socket bytes include the handshakes: 68 bytes each way in
			// plaintext (+5 for HaveAll); MSE adds at least the 96-byte
			// key, the two 20-byte hashes and VC/crypto fields out, and
			// the key, VC and crypto_select in.
			in, out := c.Bytes()
			wantIn, wantOut := int64(68+5), int64(68)
			if c.Method != MethodPlaintext {
				wantIn, wantOut = 96+8+4+2+68+5, 96+20+20+8+4+2+2+68
			}
			if in < wantIn || out < wantOut || (c.Method == MethodPlaintext && (in != wantIn || out != wantOut)) {
				t.Fatalf("Bytes() = %d in, %d out; want at least %d, %d (exactly, in plaintext)", in, out, wantIn, wantOut)
			}
		})
	}
}

// TestAutoFallsBackToPlaintext: a peer that hangs up on MSE gets a plain
// handshake under auto.
func TestAutoFallsBackToPlaintext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				var b [68]byte
				if _, err := readFull(raw, b[:]); err != nil || b[0] != 19 {
					return // MSE: hang up, like a plaintext-only client
				}
				reply := []byte(pp.Protocol)
				reply = append(reply, make([]byte, 8)...)
				reply = append(reply, testIH[:]...)
				reply = append(reply, []byte("-XX0000-plainonly123")...)
				raw.Write(reply)
				raw.Read(b[:])
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, netip.MustParseAddrPort(ln.Addr().String()), Config{InfoHash: testIH, Policy: PolicyAuto})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Method != MethodPlaintext || string(c.PeerID[:8]) != "-XX0000-" {
		t.Fatalf("method %s peer %q", c.Method, c.PeerID)
	}
	// The same peer under require must fail, not fall back.
	_, err = Dial(ctx, netip.MustParseAddrPort(ln.Addr().String()), Config{InfoHash: testIH, Policy: PolicyRequire})
	if !errors.Is(err, ErrHandshake) {
		t.Fatalf("require: err = %v", err)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestAcceptUnknownInfoHash(t *testing.T) {
	addr, errs := listener(t, AcceptConfig{AllowPlaintext: true}, func(c *Conn) {})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	other := infohash.T{0xee}
	for _, pol := range []Policy{PolicyPlaintext, PolicyRequire} {
		if _, err := Dial(ctx, addr, Config{InfoHash: other, Policy: pol}); err == nil {
			t.Fatalf("%s: dial for an unknown torrent succeeded", pol)
		}
		if err := <-errs; !errors.Is(err, ErrHandshake) {
			t.Fatalf("%s: accept err = %v", pol, err)
		}
	}
}

func TestDialRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, addr, Config{InfoHash: testIH})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
}
