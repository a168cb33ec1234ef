package cheat

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// JOALSpeedRefresh is how long JOAL keeps a randomly drawn upload speed
// before drawing another.
const JOALSpeedRefresh = 20 * time.Minute

// script is a tool's announce behaviour: the counters of its first
// announce, and how each later announce's counters follow from the time
// since the previous one and the tracker's last reply.
type script struct {
	cfg   Config
	r     *rand.Rand
	speed float64   // JOAL: the current drawn speed
	drawn time.Time // JOAL: when it was drawn
}

func newScript(cfg Config, r *rand.Rand) *script { return &script{cfg: cfg, r: r} }

// between draws a speed in [lo, hi] × Rate.
func (s *script) between(lo, hi float64) float64 {
	return s.cfg.Rate * (lo + (hi-lo)*s.r.Float64())
}

func (s *script) start() counters {
	if s.cfg.Kind == RatioMaster {
		// RatioMaster's "finished" percentage: this profile starts at 50%.
		return counters{left: s.cfg.Size / 2}
	}
	return counters{}
}

// step advances the counters over elapsed and returns the event of the
// next announce ("" or "completed").
func (s *script) step(st *counters, elapsed time.Duration, rep reply) string {
	sec := elapsed.Seconds()
	switch s.cfg.Kind {
	case LeecherFollower:
		if rep.leechers > 0 {
			st.up += int64(s.between(0.7, 1.3) * sec)
		}
	case RatioMaster:
		// A fresh random upload and download speed at each update, from
		// 50% to 150% of the configured speed.
		st.up += int64(s.between(0.5, 1.5) * sec)
		if st.left > 0 {
			d := min(st.left, int64(s.between(0.5, 1.5)*sec))
			st.down += d
			st.left -= d
			if st.left == 0 {
				return "completed"
			}
		}
	case JOAL:
		now := time.Now()
		if s.speed == 0 || now.Sub(s.drawn) >= JOALSpeedRefresh {
			s.speed, s.drawn = s.between(0.5, 1.5), now
		}
		// The bandwidth dispatcher gives a torrent a share only while the
		// tracker lists both seeders and leechers for it.
		if rep.leechers > 0 && rep.seeders > 0 {
			st.up += int64(s.speed * sec)
		}
	case Rustatio:
		// "Idle when no leechers", rates randomized at every announce.
		if rep.leechers > 0 {
			st.up += int64(s.between(0.8, 1.2) * sec)
		}
	default:
		st.up += int64(s.cfg.Rate * sec)
	}
	return ""
}

// serveHandshakeAndClose is Rustatio on the wire: a plaintext handshake
// answered, then the connection closed two seconds later without a
// bitfield. MSE is refused.
func (c *Cheater) serveHandshakeAndClose(ctx context.Context) {
	c.serveHandshakes(ctx, [8]byte{}, false, func(ctx context.Context, conn *peerwire.Conn) {
		sleep(ctx, 2*time.Second)
	})
}

// serveSilentSeeder claims every piece (HaveAll where the peer speaks the
// Fast extension, else a full bitfield), keeps the connection open with
// keep-alives, and never unchokes: requests go unanswered.
func (c *Cheater) serveSilentSeeder(ctx context.Context) {
	all := make([]bool, max(1, (c.cfg.Size+c.cfg.PieceLength-1)/c.cfg.PieceLength))
	for i := range all {
		all[i] = true
	}
	c.serveHandshakes(ctx, peerwire.DefaultReserved(), true, func(ctx context.Context, conn *peerwire.Conn) {
		first := pp.Message{Type: pp.Bitfield, Bitfield: all}
		if conn.SupportsFast() {
			first = pp.Message{Type: pp.HaveAll}
		}
		if conn.WriteMessages(first) != nil {
			return
		}
		// One loop: read until 30 s pass in silence, then a keep-alive.
		for ctx.Err() == nil {
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			_, err := conn.ReadMessage()
			switch {
			case errors.Is(err, peerwire.ErrTimeout):
				if conn.WriteMessages(pp.Message{Keepalive: true}) != nil {
					return
				}
			case err != nil && !errors.Is(err, peerwire.ErrProtocol):
				return
			}
		}
	})
}
