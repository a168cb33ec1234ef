package collect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
)

func TestPunchesPick(t *testing.T) {
	p := newPunches()
	now := time.Now()
	target := netip.MustParseAddrPort("10.0.0.9:6881")
	if got := p.pick(target, 3, time.Minute, now); got != nil {
		t.Fatalf("no relays: picked %v", got)
	}
	for i := range 5 {
		p.setRelay(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 6881), true)
	}
	p.setRelay(target, true) // a peer is never its own relay
	got := p.pick(target, 3, time.Minute, now)
	if len(got) != 3 {
		t.Fatalf("picked %v, want 3 relays", got)
	}
	for _, r := range got {
		if r == target {
			t.Fatalf("picked the target itself as a relay: %v", got)
		}
	}
	if again := p.pick(target, 3, time.Minute, now.Add(30*time.Second)); again != nil {
		t.Fatalf("asked again within the interval: %v", again)
	}
	if again := p.pick(target, 3, time.Minute, now.Add(time.Minute)); len(again) != 3 {
		t.Fatalf("a minute later: %v, want 3 relays", again)
	}
	p.notePunched(target.Addr(), now)
	if !p.wasPunched(target.Addr(), now.Add(punchedFor-time.Second)) || p.wasPunched(target.Addr(), now.Add(punchedFor)) {
		t.Fatal("an introduction counts for punchedFor, and no longer")
	}
	var none *punches // no holepunching: every method is a no-op
	none.setRelay(target, true)
	if none.pick(target, 3, time.Minute, now) != nil || none.wasPunched(target.Addr(), now) {
		t.Fatal("a nil punches holepunches")
	}
}

func TestUnreached(t *testing.T) {
	for _, tc := range []struct {
		r    probe.Result
		want bool
	}{
		{probe.Result{Outcome: probe.OutcomeRefused}, true},
		{probe.Result{Outcome: probe.OutcomeTimeout}, true},
		{probe.Result{Outcome: probe.OutcomeTimeout, TCPConnected: true}, false}, // a peer that answered
		{probe.Result{Outcome: probe.OutcomeHandshakeFailed}, true},
		{probe.Result{Outcome: probe.OutcomeHandshakeFailed, Encryption: "rc4"}, false},
		{probe.Result{Outcome: probe.OutcomeOK, Encryption: "rc4"}, false},
		{probe.Result{Outcome: probe.OutcomeEncryptionRequired}, false},
	} {
		if got := unreached(&tc.r); got != tc.want {
			t.Errorf("%s (connected %v, encryption %q): unreached %v, want %v", tc.r.Outcome, tc.r.TCPConnected, tc.r.Encryption, got, tc.want)
		}
	}
}
