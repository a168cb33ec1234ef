package serve

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// TestServeIncoming: one listener takes incoming connections for every
// swarm. A peer of swarm A connects with MSE (the responder finds A among
// both swarms' info hashes), one of swarm B in plaintext; each is handed
// to its own swarm's collector, which follows it as a watch and learns the
// peer's listen address from its extension handshake. A connection for a
// torrent the service does not audit is refused.
func TestServeIncoming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	watchDir := filepath.Join(dir, "watch")
	if err := os.Mkdir(watchDir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(dir, "serve.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var infohashes [3]infohash.T
	for i := range 3 {
		_, tor, err := swarmsim.NewPayload(fmt.Sprintf("incoming-%d.bin", i), 1<<20, 64<<10, uint64(60+i))
		if err != nil {
			t.Fatal(err)
		}
		infohashes[i] = tor.InfoHash
		if i < 2 { // the third is not audited
			writeTorrent(t, watchDir, tor, "http://127.0.0.1:1/announce")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, WatchDir: watchDir, PollEvery: 100 * time.Millisecond, JudgeEvery: time.Hour, Listener: ln,
		Collect: collect.Config{SnapshotInterval: time.Hour, ProbeInterval: time.Hour, ProbeBytes: 64 << 10, ProbeTimeout: 5 * time.Second, Watch: true}})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	for len(svc.statuses()) < 2 {
		if ctx.Err() != nil {
			t.Fatal("the swarms never started")
		}
		time.Sleep(50 * time.Millisecond) // polling the service's state
	}
	to := netip.MustParseAddrPort(ln.Addr().String())
	dialIn := func(ip string, ih infohash.T, policy peerwire.Policy) (*peerwire.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := peerwire.Dial(dctx, to, peerwire.Config{InfoHash: ih, PeerID: [20]byte{'-', 'I', 'N'}, Policy: policy, Dialer: d})
		if err != nil {
			return nil, err
		}
		ext, _ := bencode.Marshal(map[string]any{"m": map[string]int{"ut_pex": 1}, "p": 51413})
		return c, c.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: ext})
	}
	a, err := dialIn("127.0.0.7", infohashes[0], peerwire.PolicyRequire)
	if err != nil {
		t.Fatalf("MSE connection for swarm A: %v", err)
	}
	defer a.Close()
	if a.Method != peerwire.MethodRC4 {
		t.Errorf("swarm A's connection: %s, want rc4", a.Method)
	}
	b, err := dialIn("127.0.0.8", infohashes[1], peerwire.PolicyPlaintext)
	if err != nil {
		t.Fatalf("plaintext connection for swarm B: %v", err)
	}
	defer b.Close()
	if c, err := dialIn("127.0.0.9", infohashes[2], peerwire.PolicyPlaintext); err == nil {
		c.Close()
		t.Error("a connection for a torrent not audited was accepted")
	}
	want := map[infohash.T]netip.AddrPort{infohashes[0]: netip.MustParseAddrPort("127.0.0.7:51413"), infohashes[1]: netip.MustParseAddrPort("127.0.0.8:51413")}
	for deadline := time.Now().Add(20 * time.Second); ; {
		done := 0
		for _, s := range svc.statuses() {
			var ih infohash.T
			if err := ih.FromHexString(s.InfoHash); err != nil {
				t.Fatal(err)
			}
			svc.mu.Lock()
			sw := svc.swarms[ih]
			svc.mu.Unlock()
			if s.Progress.Incoming == 1 && sw != nil && inBook(sw, want[ih]) {
				done++
			}
		}
		if done == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("each swarm's collector did not take its incoming connection: %+v", svc.statuses())
		}
		time.Sleep(50 * time.Millisecond) // polling the collectors' progress
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

// inBook reports whether the swarm's book has addr.
func inBook(sw *swarm, addr netip.AddrPort) bool {
	_, ok := sw.book.Get(addr)
	return ok
}
