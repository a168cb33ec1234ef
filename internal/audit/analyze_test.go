package audit

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// TestLoadEvidenceReach: each wire peer's reach comes from how its
// handshakes came: a probe or an outgoing watch is direct, a watch on a
// connection the peer opened is incoming, a heartbeat says neither alone,
// and a refusal is no reach.
func TestLoadEvidenceReach(t *testing.T) {
	_, tor, err := swarmsim.NewPayload("reach.bin", 1<<20, 64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(t.TempDir(), "reach.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sw, err := st.EnsureSwarm(ctx, store.SwarmInfo{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	a := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	events := []store.ConnEvent{
		{Addr: a("127.0.0.1:1"), Outcome: store.ConnOK},
		{Addr: a("127.0.0.1:1"), Outcome: store.ConnOK, Detail: store.DetailHeartbeat},
		{Addr: a("127.0.0.2:2"), Outcome: store.ConnOK, Detail: store.DetailIncomingWatch},
		{Addr: a("127.0.0.2:2"), Outcome: store.ConnOK, Detail: store.DetailHeartbeat},
		{Addr: a("127.0.0.3:3"), Outcome: store.ConnOK, Detail: store.DetailWatch},
		{Addr: a("127.0.0.3:3"), Outcome: store.ConnOK, Detail: store.DetailIncomingWatch},
		{Addr: a("127.0.0.4:4"), Outcome: store.ConnRefused},
	}
	for i, ev := range events {
		ev.At = t0.Add(time.Duration(i) * time.Second)
		if err := st.AddConnEvent(ctx, sw, ev); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := LoadEvidence(ctx, st, sw, tor, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"127.0.0.1:1": {"direct"}, "127.0.0.2:2": {"incoming"}, "127.0.0.3:3": {"direct", "incoming"}, "127.0.0.4:4": {}}
	if len(ev.Wire) != len(want) {
		t.Fatalf("%d wire peers, want %d", len(ev.Wire), len(want))
	}
	for _, w := range ev.Wire {
		if got := w.Reach.Ways(); !slices.Equal(got, want[w.Addr.String()]) {
			t.Errorf("%s: reach %v, want %v", w.Addr, got, want[w.Addr.String()])
		}
	}
}
