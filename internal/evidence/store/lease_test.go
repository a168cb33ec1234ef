package store

import (
	"testing"
	"time"
)

// TestLeases: one holder at a time; the holder renews; another node takes
// an expired lease; release frees it. Runs on both engines.
func TestLeases(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	take := func(node string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.AcquireLease(ctx, "swarm-1", node, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !take("a", 200*time.Millisecond) {
		t.Fatal("a could not take a free lease")
	}
	if take("b", time.Minute) {
		t.Fatal("b took a lease a holds")
	}
	if !take("a", 200*time.Millisecond) {
		t.Fatal("a could not renew its lease")
	}
	time.Sleep(300 * time.Millisecond) // let a's lease expire: what is tested is expiry
	if !take("b", time.Minute) {
		t.Fatal("b could not take a's expired lease")
	}
	if take("a", time.Minute) {
		t.Fatal("a took back a lease b holds")
	}
	ls, err := s.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Node != "b" {
		t.Fatalf("leases %+v, %v", ls, err)
	}
	if err := s.ReleaseLease(ctx, "swarm-1", "b"); err != nil {
		t.Fatal(err)
	}
	if !take("a", time.Minute) {
		t.Fatal("a could not take a released lease")
	}
}

// TestTakeTurn: a turn is taken once per gap, whoever asks — the same node
// included — and again once the gap has passed.
func TestTakeTurn(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	take := func(node string) bool {
		t.Helper()
		ok, err := s.TakeTurn(ctx, "probe:10.0.0.1", node, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !take("a") || take("a") || take("b") {
		t.Fatal("a turn was taken twice within its gap")
	}
	time.Sleep(250 * time.Millisecond) // the gap passing is what is tested
	if !take("b") {
		t.Fatal("the turn was not free after its gap")
	}
}
