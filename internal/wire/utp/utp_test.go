package utp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

func listen(t testing.TB, o Options) *Socket {
	t.Helper()
	s, err := Listen("udp4", "127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, s *Socket, to netip.AddrPort) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func accept(t testing.TB, s *Socket) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := s.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}
	return nil
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// exchange sends a and b across the connection both ways at once and checks
// each side reads exactly what the other wrote, then EOF after Close.
func exchange(t *testing.T, x, y net.Conn, a, b []byte) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	x.SetDeadline(deadline)
	y.SetDeadline(deadline)
	var g errgroup.Group
	send := func(c net.Conn, p []byte) func() error {
		return func() error {
			if _, err := c.Write(p); err != nil {
				return err
			}
			return nil
		}
	}
	var gotX, gotY []byte
	recv := func(c net.Conn, n int, into *[]byte) func() error {
		return func() error {
			buf := make([]byte, n)
			if _, err := io.ReadFull(c, buf); err != nil {
				return err
			}
			*into = buf
			return nil
		}
	}
	g.Go(send(x, a))
	g.Go(send(y, b))
	g.Go(recv(y, len(a), &gotY))
	g.Go(recv(x, len(b), &gotX))
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotY, a) || !bytes.Equal(gotX, b) {
		t.Fatal("bytes differ after the exchange")
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := y.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the peer's FIN: %d, %v; want EOF", n, err)
	}
}

func TestExchange(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b int
	}{
		{"small", 68, 68},
		{"one way", 4 << 20, 0},
		{"both ways", 2 << 20, 3 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := listen(t, Options{Accept: true})
			cli := listen(t, Options{})
			c := dial(t, cli, srv.AddrPort())
			d := accept(t, srv)
			exchange(t, c, d, randomBytes(tc.a, 1), randomBytes(tc.b, 2))
		})
	}
}

// startRelay forwards datagrams between one client and server on
// loopback, dropping every dropEvery-th and holding every swapEvery-th
// back behind the next.
func startRelay(t *testing.T, server netip.AddrPort, dropEvery, swapEvery int) netip.AddrPort {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		var client netip.AddrPort
		var held []byte
		var heldTo netip.AddrPort
		buf := make([]byte, 64<<10)
		for i := 1; ; i++ {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			to := server
			if from == server {
				to = client
			} else {
				client = from
			}
			if !to.IsValid() || i%dropEvery == 0 {
				continue
			}
			if i%swapEvery == 0 && held == nil {
				held, heldTo = append([]byte(nil), buf[:n]...), to
				continue
			}
			pc.WriteToUDPAddrPort(buf[:n], to)
			if held != nil {
				pc.WriteToUDPAddrPort(held, heldTo)
				held = nil
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestLossyLink: every 13th datagram lost and every 7th delayed behind the
// next, both ways: the streams still arrive whole and in order.
func TestLossyLink(t *testing.T) {
	srv := listen(t, Options{Accept: true})
	cli := listen(t, Options{})
	relay := startRelay(t, srv.AddrPort(), 13, 7)
	c := dial(t, cli, relay)
	d := accept(t, srv)
	exchange(t, c, d, randomBytes(1<<20, 3), randomBytes(512<<10, 4))
}

func TestDialErrors(t *testing.T) {
	closedPort := func() netip.AddrPort {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.LocalAddr().(*net.UDPAddr).AddrPort() // reads nothing: silent
	}
	notListening := listen(t, Options{})
	for _, tc := range []struct {
		name string
		to   netip.AddrPort
		want error
	}{
		{"reset by a socket that takes no connections", notListening.AddrPort(), syscall.ECONNREFUSED},
		{"silence", closedPort(), os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := listen(t, Options{ConnectTimeout: 500 * time.Millisecond})
			_, err := cli.Dial(context.Background(), tc.to)
			if !errors.Is(err, tc.want) {
				t.Fatalf("dial: %v, want %v", err, tc.want)
			}
			var ne net.Error
			if tc.want == os.ErrDeadlineExceeded && !(errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("dial: %v is no timeout net.Error", err)
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	srv := listen(t, Options{Accept: true})
	cli := listen(t, Options{})
	c := dial(t, cli, srv.AddrPort())
	accept(t, srv)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
	c.SetReadDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() { defer wg.Done(); _, err = c.Read(make([]byte, 1)) }()
	c.Close()
	wg.Wait()
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read across Close: %v, want net.ErrClosed", err)
	}
}

// TestResetByPeer: the peer's socket goes away; its reset (for packets to a
// connection it no longer knows) ends our reads.
func TestResetByPeer(t *testing.T) {
	srv := listen(t, Options{Accept: true})
	cli := listen(t, Options{})
	c := dial(t, cli, srv.AddrPort())
	d := accept(t, srv).(*Conn)
	d.mu.Lock()
	d.die(net.ErrClosed) // forgotten without a FIN
	d.mu.Unlock()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want a reset", err)
	}
}

// TestHostileSender: a peer that sends packets far past a gap, of every
// size, cannot make us keep more than the receive window.
func TestHostileSender(t *testing.T) {
	const window = 64 << 10
	srv := listen(t, Options{Accept: true, RecvBuffer: window})
	raw, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	to := srv.AddrPort()
	syn := Header{Type: TypeSyn, ConnID: 100, Seq: 1}
	raw.WriteToUDPAddrPort(syn.Append(nil), to)
	d := accept(t, srv).(*Conn)
	raw.WriteToUDPAddrPort([]byte("not a packet"), to)
	for i := range 3000 {
		h := Header{Type: TypeData, ConnID: 101, Seq: uint16(3 + i), Wnd: 1 << 20}
		raw.WriteToUDPAddrPort(h.Append(nil), to) // empty payloads too
		raw.WriteToUDPAddrPort(append(h.Append(nil), make([]byte, 1200)...), to)
	}
	// An ack comes back for every data packet taken: read them until
	// they stop (some datagrams overflow the socket buffers).
	buf := make([]byte, 2048)
	for range 6000 {
		raw.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := raw.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
	}
	d.mu.Lock()
	kept, entries := d.oooBytes, len(d.ooo)
	d.mu.Unlock()
	if kept > window || entries > maxAhead {
		t.Fatalf("kept %d bytes in %d packets past the gap, window %d", kept, entries, window)
	}
	if srv.Malformed() != 1 {
		t.Fatalf("malformed: %d, want 1", srv.Malformed())
	}
}

func TestParseRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Type: TypeSyn, ConnID: 7, Timestamp: 1, Seq: 1},
		{Type: TypeState, ConnID: 65535, Timestamp: 1 << 31, TimestampDiff: 12345, Wnd: 1 << 20, Seq: 65535, Ack: 2, SACK: []byte{1, 0, 0, 128}},
		{Type: TypeData, ConnID: 1, Seq: 9, Ack: 8},
	} {
		b := append(h.Append(nil), "payload"...)
		got, payload, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(payload) != "payload" || got.Type != h.Type || got.ConnID != h.ConnID || got.Timestamp != h.Timestamp ||
			got.TimestampDiff != h.TimestampDiff || got.Wnd != h.Wnd || got.Seq != h.Seq || got.Ack != h.Ack || !bytes.Equal(got.SACK, h.SACK) {
			t.Fatalf("round trip of %+v gave %+v", h, got)
		}
	}
}

func TestParseErrors(t *testing.T) {
	valid := (&Header{Type: TypeData}).Append(nil)
	withExt := func(ext ...byte) []byte {
		b := append([]byte(nil), valid...)
		b[1] = ext[0]
		return append(b, ext[1:]...)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", valid[:19], ErrShortPacket},
		{"version", append([]byte{0x02}, valid[1:]...), ErrVersion},
		{"type", append([]byte{0x51}, valid[1:]...), ErrPacketType},
		{"extension cut", withExt(1, 0), ErrExtension},
		{"extension longer than the packet", withExt(2, 0, 9, 1), ErrExtension},
		{"selective ack of 3 bytes", withExt(1, 0, 3, 1, 2, 3), ErrExtension},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Parse(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("Parse: %v, want %v", err, tc.want)
			}
		})
	}
	// An unknown extension is skipped.
	if _, p, err := Parse(append(withExt(2, 0, 2, 9, 9), 'x')); err != nil || string(p) != "x" {
		t.Fatalf("unknown extension: %q, %v", p, err)
	}
}
