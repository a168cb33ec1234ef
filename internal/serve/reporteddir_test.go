package serve

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// TestImportReported: a log in the reported folder is imported as it
// grows, complete lines only; bad lines are skipped; after a restart on
// the same store the same log adds nothing twice; a truncated log is read
// again from its start (its old announces not recorded again).
func TestImportReported(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(dir, "serve.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := filepath.Join(dir, "reported")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	ih := infohash.T{0x42}
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	line := func(i int) []byte {
		b, err := reported.AppendJSONLine(nil, reported.Announce{At: t0.Add(time.Duration(i) * time.Minute), InfoHash: ih,
			IP: netip.MustParseAddr("127.0.0.9"), Port: 6881, Uploaded: int64(i) << 20, Passkey: "logpasskey000001"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	path := filepath.Join(logs, "events-10.jsonl")
	write := func(flag int, parts ...[]byte) {
		f, err := os.OpenFile(path, flag|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			f.Write(p)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() int {
		as, err := st.Announces(ctx, ih, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return len(as)
	}
	newService := func() *Service {
		s, err := New(Config{Store: st, WatchDir: dir, ReportedDir: logs})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	l2 := line(2)
	s := newService()
	steps := []struct {
		name  string
		write func()
		want  int
	}{
		{"two lines and half a third", func() { write(os.O_TRUNC, line(0), line(1), l2[:10]) }, 2},
		{"the third completed, a bad line", func() { write(os.O_APPEND, l2[10:], []byte("{not json\n")) }, 3},
		{"nothing new", func() {}, 3},
		{"restart: nothing twice", func() { s = newService() }, 3},
		{"a fourth after the restart", func() { write(os.O_APPEND, line(3)) }, 4},
		{"truncated and rewritten with one new", func() { write(os.O_TRUNC, line(3), line(4)) }, 5},
	}
	for _, step := range steps {
		step.write()
		if err := s.importReported(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := stored(); got != step.want {
			t.Fatalf("%s: %d announces stored, want %d", step.name, got, step.want)
		}
	}
}
