package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// FuzzMessageLoop drives the probe's message handling with arbitrary peer
// bytes: it must end with a classified outcome, never panic, and never
// account more data than it asked for.
func FuzzMessageLoop(f *testing.F) {
	_, target := testPayload(10*64<<10, 64<<10)
	seed := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(b, m...)
		}
		return b
	}
	block := func(piece, begin uint32, n int) []byte {
		p := binary.BigEndian.AppendUint32(nil, piece)
		p = binary.BigEndian.AppendUint32(p, begin)
		return frame(byte(pp.Piece), append(p, make([]byte, n)...)...)
	}
	f.Add(seed(frame(byte(pp.Bitfield), 0xff, 0xc0), frame(byte(pp.Unchoke)), block(0, 0, 16<<10)))
	f.Add(seed(frame(byte(pp.HaveAll)), frame(byte(pp.AllowedFast), 0, 0, 0, 2), frame(byte(pp.Choke)), frame(byte(pp.Reject), 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 64, 0)))
	f.Add(seed(frame(byte(pp.Have), 0, 0, 0, 9), frame(byte(pp.Bitfield), 0x80, 0x00), []byte{0, 0, 0, 0}))
	f.Add(seed(frame(byte(pp.Extended), append([]byte{0}, "d1:md6:ut_pexi1ee4:reqqi2ee"...)...)))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &session{t: target, r: &Result{PiecesTotal: target.NumPieces}, start: time.Now()}
		s.o = Options{MaxBytes: 128 << 10, InitialWait: time.Millisecond, Timeout: time.Second, Rand: rand.New(rand.NewPCG(1, 1))}
		s.conn = peerwire.NewStreamConn(data, peerwire.DefaultMaxMessage)
		s.r.Extended, s.r.Fast = true, true
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := s.talk(ctx)
		s.finish(err)
		if s.r.Outcome == "" {
			t.Fatal("no outcome")
		}
		if err != nil && !errors.Is(err, peerwire.ErrProtocol) && !errors.Is(err, peerwire.ErrClosed) &&
			!errors.Is(err, peerwire.ErrTimeout) && !errors.Is(err, errChokedThroughout) {
			t.Fatalf("unclassified error: %v", err)
		}
		if s.r.BytesDownloaded > 128<<10 {
			t.Fatalf("accounted %d bytes of a 128 KiB budget", s.r.BytesDownloaded)
		}
	})
}
