package pex_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/trackerclient/trackertest"
	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
)

func TestParse(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name     string
		payload  string
		added    []pex.Peer
		dropped  []netip.AddrPort
		mismatch bool
		err      error
	}{
		{
			name:    "added with flags and dropped",
			payload: "d5:added" + trackertest.Bstr(trackertest.Compact4("10.0.0.1:6881", "10.0.0.2:51413")) + "7:added.f" + trackertest.Bstr([]byte{0x11, 0x02}) + "7:dropped" + trackertest.Bstr(trackertest.Compact4("10.0.0.3:1")) + "e",
			added:   []pex.Peer{{ap("10.0.0.1:6881"), pex.PrefersEncryption | pex.Reachable}, {ap("10.0.0.2:51413"), pex.Seed}},
			dropped: []netip.AddrPort{ap("10.0.0.3:1")},
		},
		{
			name:    "ipv6 lists",
			payload: "d6:added6" + trackertest.Bstr(trackertest.Compact6("[2001:db8::1]:80")) + "8:added6.f" + trackertest.Bstr([]byte{0x04}) + "8:dropped6" + trackertest.Bstr(trackertest.Compact6("[2001:db8::2]:81")) + "e",
			added:   []pex.Peer{{ap("[2001:db8::1]:80"), pex.UTP}},
			dropped: []netip.AddrPort{ap("[2001:db8::2]:81")},
		},
		{
			name:     "missing flags",
			payload:  "d5:added" + trackertest.Bstr(trackertest.Compact4("10.0.0.1:1", "10.0.0.2:2")) + "7:added.f" + trackertest.Bstr([]byte{0x01}) + "e",
			added:    []pex.Peer{{ap("10.0.0.1:1"), pex.PrefersEncryption}, {ap("10.0.0.2:2"), 0}},
			mismatch: true,
		},
		{
			name:    "empty dict",
			payload: "de",
		},
		{
			name:    "unknown keys ignored",
			payload: "d3:fooi1e5:added" + trackertest.Bstr(trackertest.Compact4("10.0.0.1:1")) + "7:added.f" + trackertest.Bstr([]byte{0}) + "e",
			added:   []pex.Peer{{ap("10.0.0.1:1"), 0}},
		},
		{name: "bad compact length", payload: "d5:added5:abcdee", err: compact.ErrLength},
		{name: "bad ipv6 length", payload: "d6:added66:abcdefe", err: compact.ErrLength},
		{name: "added is an int", payload: "d5:addedi5ee", err: pex.ErrMalformed},
		{name: "not a dict", payload: "li1ee", err: pex.ErrMalformed},
		{name: "empty", payload: "", err: pex.ErrMalformed},
		{name: "truncated", payload: "d5:added6:abc", err: pex.ErrMalformed},
		{name: "trailing bytes", payload: "dexx", err: pex.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := pex.Parse([]byte(tc.payload))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(m.Added) != fmt.Sprint(tc.added) || fmt.Sprint(m.Dropped) != fmt.Sprint(tc.dropped) {
				t.Errorf("got added %v dropped %v, want %v %v", m.Added, m.Dropped, tc.added, tc.dropped)
			}
			if m.FlagsMismatch != tc.mismatch {
				t.Errorf("FlagsMismatch %v, want %v", m.FlagsMismatch, tc.mismatch)
			}
		})
	}
}

// A message with 100,000 entries is cut to MaxEntries with the rest counted.
func TestParseHugeMessageTruncated(t *testing.T) {
	const n = 100_000
	list := make([]byte, 0, n*6)
	for i := 0; i < n; i++ {
		list = append(list, 10, byte(i>>16), byte(i>>8), byte(i), 0x1a, 0xe1)
	}
	payload := "d5:added" + trackertest.Bstr(list) + "7:added.f" + trackertest.Bstr(bytes.Repeat([]byte{1}, n)) + "7:dropped" + trackertest.Bstr(list) + "e"
	m, err := pex.Parse([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Added) != pex.MaxEntries || len(m.Dropped) != pex.MaxEntries {
		t.Fatalf("got %d added, %d dropped; want %d each", len(m.Added), len(m.Dropped), pex.MaxEntries)
	}
	if m.Truncated != 2*(n-pex.MaxEntries) {
		t.Errorf("Truncated = %d, want %d", m.Truncated, 2*(n-pex.MaxEntries))
	}
	if m.FlagsMismatch {
		t.Error("flags match the full list but FlagsMismatch is set")
	}
}

func TestFlagsNames(t *testing.T) {
	for _, tc := range []struct {
		f    pex.Flags
		want string
	}{
		{0, ""},
		{pex.PrefersEncryption | pex.Seed | pex.UTP | pex.Holepunch | pex.Reachable, "encryption,seed,utp,holepunch,reachable"},
		{0x80 | pex.Seed, "seed"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%#x: %q, want %q", uint8(tc.f), got, tc.want)
		}
	}
	if pex.Flags(0).Names() == nil {
		t.Error("Names of no flags is nil; JSON would print null")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("d5:added" + trackertest.Bstr(trackertest.Compact4("10.0.0.1:6881")) + "7:added.f" + trackertest.Bstr([]byte{1}) + "e"))
	f.Add([]byte("d6:added6" + trackertest.Bstr(trackertest.Compact6("[::1]:1")) + "8:dropped6" + trackertest.Bstr(trackertest.Compact6("[::2]:2")) + "e"))
	f.Add([]byte("d5:added5:abcdee"))
	f.Add([]byte("de"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := pex.Parse(payload)
		if err != nil {
			return
		}
		if len(m.Added) > 2*pex.MaxEntries || len(m.Dropped) > 2*pex.MaxEntries {
			t.Fatalf("unbounded: %d added, %d dropped", len(m.Added), len(m.Dropped))
		}
		for _, p := range append(m.Dropped, func() (a []netip.AddrPort) {
			for _, p := range m.Added {
				a = append(a, p.Addr)
			}
			return
		}()...) {
			if !p.Addr().IsValid() || p.Addr().Is4In6() {
				t.Fatalf("bad address %v", p)
			}
		}
	})
}
