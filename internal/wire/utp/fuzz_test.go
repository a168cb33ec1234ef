package utp

import (
	"net/netip"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	f.Add((&Header{Type: TypeSyn, ConnID: 1, Seq: 1}).Append(nil))
	f.Add((&Header{Type: TypeState, SACK: []byte{1, 2, 3, 4}}).Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := Parse(b)
		if err != nil {
			return
		}
		if len(payload) > len(b) || len(h.SACK)%4 != 0 {
			t.Fatalf("payload %d of %d bytes, SACK %d", len(payload), len(b), len(h.SACK))
		}
		again, payload2, err := Parse(append(h.Append(nil), payload...))
		if err != nil || string(payload2) != string(payload) || again.Seq != h.Seq || again.Ack != h.Ack || string(again.SACK) != string(h.SACK) {
			t.Fatalf("re-encoded packet reads differently: %v", err)
		}
	})
}

// FuzzSocket feeds a listening socket a SYN and then arbitrary datagrams,
// split at 0xff bytes, from one loopback address: the connection's state
// stays within its bounds and nothing panics.
func FuzzSocket(f *testing.F) {
	data := (&Header{Type: TypeData, ConnID: 11, Seq: 2}).Append(nil)
	f.Add(append(append(data, "hello"...), 0xff))
	f.Add((&Header{Type: TypeFin, ConnID: 11, Seq: 2}).Append(nil))
	f.Add((&Header{Type: TypeState, ConnID: 11, Ack: 5, SACK: []byte{255, 255, 255, 255}}).Append(nil))
	f.Add((&Header{Type: TypeReset, ConnID: 11}).Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := listen(t, Options{Accept: true, RecvBuffer: 8 << 10})
		from := netip.MustParseAddrPort("127.0.0.1:9") // discard: our answers go nowhere
		now := time.Now()
		s.handle((&Header{Type: TypeSyn, ConnID: 10, Seq: 1, Wnd: 1 << 16}).Append(nil), from, now)
		c, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		start := 0
		for i := 0; i <= len(b); i++ {
			if i == len(b) || b[i] == 0xff {
				s.handle(b[start:i], from, now)
				start = i + 1
			}
		}
		c.Write([]byte("x"))
		conn := c.(*Conn)
		conn.mu.Lock()
		defer conn.mu.Unlock()
		if conn.oooBytes > 8<<10 || len(conn.ooo) > maxAhead || len(conn.recv)-conn.recvOff > 8<<10 || conn.inflightBytes < 0 {
			t.Fatalf("state out of bounds: %d bytes in %d packets past a gap, %d unread, %d in flight",
				conn.oooBytes, len(conn.ooo), len(conn.recv)-conn.recvOff, conn.inflightBytes)
		}
	})
}
