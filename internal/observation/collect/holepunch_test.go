package collect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
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
	none.notePEX(target, pex.Message{Added: []pex.Peer{{Addr: target}}})
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

// TestPunchesPickKnowing: relays whose PEX named the target are asked
// first, until they drop it; PEX from a peer that is no relay changes
// nothing.
func TestPunchesPickKnowing(t *testing.T) {
	p := newPunches()
	now := time.Now()
	target := netip.MustParseAddrPort("10.0.0.9:6881")
	relay := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 6881)
	}
	for i := 1; i <= 8; i++ {
		p.setRelay(relay(i), true)
	}
	other := netip.MustParseAddrPort("10.0.0.99:6881")
	p.notePEX(other, pex.Message{Added: []pex.Peer{{Addr: target}}}) // not a relay
	p.notePEX(relay(3), pex.Message{Added: []pex.Peer{{Addr: target}, {Addr: other}}})
	p.notePEX(relay(6), pex.Message{Added: []pex.Peer{{Addr: target}}})
	for round := range 20 {
		at := now.Add(time.Duration(round) * time.Minute)
		got := p.pick(target, 3, time.Minute, at)
		if len(got) != 3 {
			t.Fatalf("round %d: picked %v", round, got)
		}
		first := map[netip.AddrPort]bool{got[0]: true, got[1]: true}
		if !first[relay(3)] || !first[relay(6)] || got[2] == other {
			t.Fatalf("round %d: picked %v, want 10.0.0.3 and 10.0.0.6 first", round, got)
		}
	}
	p.notePEX(relay(3), pex.Message{Dropped: []netip.AddrPort{target}})
	p.setRelay(relay(6), false)
	p.setRelay(relay(6), true) // a new watch of it: its old PEX is gone
	seen := map[netip.AddrPort]bool{}
	for round := range 40 {
		got := p.pick(target, 1, time.Minute, now.Add(time.Duration(100+round)*time.Minute))
		seen[got[0]] = true
	}
	if len(seen) < 4 {
		t.Fatalf("after the drops, picks concentrate on %v", seen)
	}
}

// TestPexSeenForgets: a relay's PEX memory is a ring: the target is
// forgotten once pexRing newer peers were added after it, or dropped.
func TestPexSeenForgets(t *testing.T) {
	var s pexSeen
	target := netip.MustParseAddrPort("10.0.0.9:6881")
	s.add(target)
	for i := range pexRing - 1 {
		s.add(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 6881))
	}
	if !s.has(target) {
		t.Fatal("forgotten too soon")
	}
	s.add(netip.MustParseAddrPort("10.2.0.1:6881"))
	if s.has(target) {
		t.Fatalf("remembered past %d newer peers", pexRing)
	}
	s.add(target)
	s.drop(target)
	if s.has(target) {
		t.Fatal("remembered after a drop")
	}
}
