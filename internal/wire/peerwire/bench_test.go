package peerwire

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// BenchmarkMSEHandshake measures a full MSE + BitTorrent handshake pair
// (initiator and receiver in this process) over loopback TCP: four 768-bit
// modular exponentiations bound the rate per core.
func BenchmarkMSEHandshake(b *testing.B) {
	for _, policy := range []Policy{PolicyRequire, PolicyPlaintext} {
		b.Run(string(policy), func(b *testing.B) {
			addr, _ := listener(b, AcceptConfig{AllowPlaintext: true}, func(*Conn) {})
			cfg := Config{InfoHash: testIH, Policy: policy}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := Dial(ctx, addr, cfg)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkReadMessage measures framing and decoding of a realistic stream:
// mostly 16 KiB piece messages with HAVEs and keep-alives between them.
func BenchmarkReadMessage(b *testing.B) {
	var stream []byte
	block := make([]byte, 16<<10)
	const perRound = 64
	for i := 0; i < perRound; i++ {
		m := pp.Message{Type: pp.Piece, Index: pp.Integer(i), Begin: 0, Piece: block}
		stream = append(stream, m.MustMarshalBinary()...)
		h := pp.Message{Type: pp.Have, Index: pp.Integer(i)}
		stream = append(stream, h.MustMarshalBinary()...)
		stream = binary.BigEndian.AppendUint32(stream, 0)
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c := NewStreamConn(stream, DefaultMaxMessage)
		for j := 0; j < 3*perRound; j++ {
			if _, err := c.ReadMessage(); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.ReadMessage(); err == nil {
			b.Fatal("stream longer than expected")
		}
	}
}
