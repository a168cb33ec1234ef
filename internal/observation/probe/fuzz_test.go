package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
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

// FuzzRunOn drives a probe on a lent connection (RunOn) with arbitrary
// peer bytes and an arbitrary state from the lender: it must end with a
// classified outcome, never panic, never account more than it asked for,
// and hand back a state that keeps every piece the lender knew of.
func FuzzRunOn(f *testing.F) {
	_, target := testPayload(10*64<<10, 64<<10)
	n := target.NumPieces
	f.Add(frame(byte(pp.Unchoke)), uint16(0x3ff), true)
	f.Add(append(frame(byte(pp.Have), 0, 0, 0, 3), frame(byte(pp.Choke))...), uint16(1), false)
	f.Add([]byte{0, 0, 0, 0}, uint16(0), true)
	f.Fuzz(func(t *testing.T, data []byte, have uint16, choked bool) {
		st := peerwire.NewPeerState()
		st.Choked = choked
		st.AllowedFast = []int{2, n + 5}
		if have != 0 {
			st.Have = bitfield.New(n)
			for i := range n {
				if have&(1<<i) != 0 {
					st.Have.Set(i)
				}
			}
		}
		before := st.Have.Clone()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, _ := RunOn(ctx, peerwire.NewStreamConn(data, peerwire.DefaultMaxMessage), &st, target,
			Options{MaxBytes: 128 << 10, Timeout: time.Second, Rand: rand.New(rand.NewPCG(1, 1))})
		if r.Outcome == "" || !r.OnWatch {
			t.Fatalf("outcome %q, on watch %v", r.Outcome, r.OnWatch)
		}
		if r.BytesDownloaded > 128<<10 {
			t.Fatalf("accounted %d bytes of a 128 KiB budget", r.BytesDownloaded)
		}
		if before.Len() > 0 && (st.Have.Len() != n || len(before.Gained(st.Have)) > 0) {
			t.Fatalf("state handed back: %d of %d pieces, lost %v", st.Have.Count(), st.Have.Len(), before.Gained(st.Have))
		}
	})
}
