package cheat

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

func startTracker(t *testing.T) (*trackerserver.Server, *reported.MemoryRecorder) {
	t.Helper()
	rec := &reported.MemoryRecorder{}
	srv, err := trackerserver.New(trackerserver.Config{HTTPAddr: "127.0.0.1:0", Interval: time.Second, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, rec
}

// TestKinds: every kind announces growing uploads (a flash session one big
// jump), and its listening behaviour is what the kind says.
func TestKinds(t *testing.T) {
	srv, rec := startTracker(t)
	ih := infohash.T{0x42, 0x20} // 0x20 must survive the query encoding
	ctx := context.Background()
	for i, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			c, err := Start(ctx, Config{Kind: kind, Announce: srv.HTTPURL(), InfoHash: ih, Size: 1 << 20, Rate: 1 << 20, Interval: 200 * time.Millisecond, Seed: uint64(i)})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(900 * time.Millisecond)
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			conn, dialErr := peerwire.Dial(dctx, c.Addr, peerwire.Config{InfoHash: ih, Policy: peerwire.PolicyPlaintext})
			var first peerwire.Message
			var readErr error
			if dialErr == nil {
				_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
				first, readErr = conn.ReadMessage()
				conn.Close()
			}
			c.Close()
			switch kind {
			case Ghost, LeecherFollower, FlashSession, RatioMaster, RatioPy, FlashBurst:
				if !errors.Is(dialErr, peerwire.ErrRefused) {
					t.Errorf("dial: %v, want refused", dialErr)
				}
			case Mute, JOAL:
				if !errors.Is(dialErr, peerwire.ErrTimeout) {
					t.Errorf("dial: %v, want a timeout", dialErr)
				}
			case NoBitfield:
				if dialErr != nil || !errors.Is(readErr, peerwire.ErrTimeout) {
					t.Errorf("dial: %v, first message %v, %v; want a handshake and silence", dialErr, first, readErr)
				}
			case Rustatio:
				if dialErr != nil || !errors.Is(readErr, peerwire.ErrClosed) {
					t.Errorf("dial: %v, first message %v, %v; want a handshake closed without a word", dialErr, first, readErr)
				}
			case SilentSeeder:
				if dialErr != nil || readErr != nil || first.Type != pp.HaveAll {
					t.Errorf("dial: %v, first message %v, %v; want HaveAll", dialErr, first, readErr)
				}
			}
			var ann []reported.Announce
			for _, a := range rec.Announces() {
				if a.Port == c.Addr.Port() && a.InfoHash == ih {
					ann = append(ann, a)
				}
			}
			if len(ann) < 2 || ann[len(ann)-1].Event != reported.EventStopped {
				t.Fatalf("announces %+v", ann)
			}
			last := ann[len(ann)-1]
			switch kind {
			case LeecherFollower, JOAL, Rustatio:
				// No leechers in this swarm: they idle.
				if last.Uploaded != 0 {
					t.Fatalf("claims %d with no leechers", last.Uploaded)
				}
			case FlashSession:
				if last.Uploaded != 1800<<20 {
					t.Fatalf("flash session claims %d", last.Uploaded)
				}
			case FlashBurst:
				starts := 0
				for k, a := range ann {
					if a.Event == reported.EventStarted {
						starts++
						if k+1 >= len(ann) || ann[k+1].Event != reported.EventStopped || ann[k+1].At.Sub(a.At) > time.Second {
							t.Fatalf("a started not followed at once by stopped: %+v", ann)
						}
					}
				}
				if starts < 2 || last.Uploaded == 0 {
					t.Fatalf("%d bursts, last %+v", starts, last)
				}
			case RatioMaster:
				if last.Uploaded == 0 || last.Downloaded == 0 || last.Left >= 1<<19 || ann[0].Left != 1<<19 {
					t.Fatalf("leecher phase: first %+v, last %+v", ann[0], last)
				}
			default:
				if last.Uploaded == 0 || last.Downloaded != 0 || last.Left != 0 {
					t.Fatalf("fake seeder claims %+v", last)
				}
			}
		})
	}
}

func TestProxyMultiplies(t *testing.T) {
	srv, rec := startTracker(t)
	p, err := StartProxy("127.0.0.1", srv.HTTPURL(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ih := infohash.T{0x20, 0x2b}
	q := url.Values{"info_hash": {string(ih[:])}, "peer_id": {"-LT2080-abcdefghijkl"}, "port": {"6881"},
		"uploaded": {"1000"}, "downloaded": {"5"}, "left": {"0"}}
	resp, err := http.Get(p.URL + "?" + encodeQuery(q))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	as := rec.Announces()
	if len(as) != 1 || as[0].Uploaded != 3000 || as[0].Downloaded != 5 || as[0].InfoHash != ih {
		t.Fatalf("recorded %+v", as)
	}
}

// TestRewrites: each proxy rewrite changes exactly its fields.
func TestRewrites(t *testing.T) {
	srv, rec := startTracker(t)
	ih := infohash.T{0x20, 0x2c}
	for _, tc := range []struct {
		name           string
		rw             Rewrite
		up, down, left int64
	}{
		{"greedy-x2", Rewrite{Upload: 2}, 2000, 500, 700},
		{"hide-download", Rewrite{HideDownload: true}, 1000, 0, 700},
		{"ratioghost", Rewrite{DownloadCoupled: 1.5}, 1750, 500, 700},
		{"left-zero", Rewrite{LeftZero: true}, 1000, 500, 0},
		{"none", Rewrite{}, 1000, 500, 700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := StartRewriter("127.0.0.1", srv.HTTPURL(), tc.rw)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			n := len(rec.Announces())
			q := url.Values{"info_hash": {string(ih[:])}, "peer_id": {"-LT2080-abcdefghijkl"}, "port": {"6881"},
				"uploaded": {"1000"}, "downloaded": {"500"}, "left": {"700"}}
			resp, err := http.Get(p.URL + "?" + encodeQuery(q))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			as := rec.Announces()[n:]
			if len(as) != 1 || as[0].Uploaded != tc.up || as[0].Downloaded != tc.down || as[0].Left != tc.left {
				t.Fatalf("recorded %+v", as)
			}
			if tc.rw.Active() == (tc.name == "none") {
				t.Fatalf("Active() = %v", tc.rw.Active())
			}
		})
	}
}
