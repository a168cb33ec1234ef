package peerwire

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
)

// TestAutoFallsBackWithinTheDeadline: under PolicyAuto a peer that ignores MSE —
// silent (reads our bytes, never answers) or closing — gets a plaintext
// try within the caller's deadline, and the plaintext handshake succeeds.
func TestAutoFallsBackWithinTheDeadline(t *testing.T) {
	ih := infohash.T{7}
	for _, tc := range []struct {
		name  string
		first func(net.Conn) // what the peer does with our MSE attempt
	}{
		{"silent", func(c net.Conn) { io.Copy(io.Discard, c) }},
		{"closing", func(c net.Conn) { io.ReadFull(c, make([]byte, 20)); c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				first, err := ln.Accept()
				if err != nil {
					return
				}
				defer first.Close()
				go tc.first(first)
				second, err := ln.Accept()
				if err != nil {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, err := Accept(ctx, second, AcceptConfig{
					Known: func(h infohash.T) bool { return h == ih }, InfoHash: func(y func(infohash.T) bool) { y(ih) },
					AllowPlaintext: true, RefuseMSE: true,
				})
				if err == nil {
					c.Close()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			start := time.Now()
			c, err := Dial(ctx, netip.MustParseAddrPort(ln.Addr().String()), Config{InfoHash: ih, Policy: PolicyAuto, MSETimeout: time.Second})
			if err != nil {
				t.Fatalf("auto did not fall back to plaintext: %v", err)
			}
			c.Close()
			if c.Method != MethodPlaintext {
				t.Errorf("method %s, want plaintext", c.Method)
			}
			if el := time.Since(start); el > 4*time.Second {
				t.Errorf("took %v: the MSE attempt was not bounded", el)
			}
			ln.Close()
			<-done
		})
	}
}
