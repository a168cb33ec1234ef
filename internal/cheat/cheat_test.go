package cheat

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/reported"
	"github.com/swarmaudit/swarmaudit/internal/tracker"
)

func startTracker(t *testing.T) (*tracker.Server, *reported.MemoryRecorder) {
	t.Helper()
	rec := &reported.MemoryRecorder{}
	srv, err := tracker.New(tracker.Config{HTTPAddr: "127.0.0.1:0", Interval: time.Second, Recorder: rec})
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
			_, dialErr := peerwire.Dial(dctx, c.Addr, peerwire.Config{InfoHash: ih, Policy: peerwire.PolicyPlaintext})
			c.Close()
			switch kind {
			case Ghost, LeecherFollower, FlashSession:
				if !errors.Is(dialErr, peerwire.ErrRefused) {
					t.Errorf("dial: %v, want refused", dialErr)
				}
			case Mute:
				if !errors.Is(dialErr, peerwire.ErrTimeout) {
					t.Errorf("dial: %v, want a timeout", dialErr)
				}
			case NoBitfield:
				if dialErr != nil {
					t.Errorf("dial: %v, want a handshake", dialErr)
				}
			}
			var last reported.Announce
			n := 0
			for _, a := range rec.Announces() {
				if a.Port == c.Addr.Port() && a.InfoHash == ih {
					last, n = a, n+1
				}
			}
			if n < 2 || last.Event != reported.EventStopped {
				t.Fatalf("%d announces, last %+v", n, last)
			}
			if kind != LeecherFollower && last.Uploaded == 0 {
				t.Fatalf("claims nothing: %+v", last)
			}
			if kind == FlashSession && last.Uploaded != 1800<<20 {
				t.Fatalf("flash session claims %d", last.Uploaded)
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
