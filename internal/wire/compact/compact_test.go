package compact_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/swarmaudit/swarmaudit/internal/wire/compact"
)

func TestDecode(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name      string
		in        []byte
		size, max int
		want      []netip.AddrPort
		truncated int
		err       error
	}{
		{"empty", nil, compact.Size4, 0, nil, 0, nil},
		{"one v4", []byte{10, 0, 0, 1, 0x1a, 0xe1}, compact.Size4, 0, []netip.AddrPort{ap("10.0.0.1:6881")}, 0, nil},
		{"two v4 max 1", []byte{1, 2, 3, 4, 0, 1, 5, 6, 7, 8, 0, 2}, compact.Size4, 1, []netip.AddrPort{ap("1.2.3.4:1")}, 1, nil},
		{"v6", append(netip.MustParseAddr("2001:db8::1").AsSlice(), 0, 80), compact.Size6, 0, []netip.AddrPort{ap("[2001:db8::1]:80")}, 0, nil},
		{"v4-mapped v6 unmapped", append(netip.MustParseAddr("::ffff:1.2.3.4").AsSlice(), 0, 80), compact.Size6, 0, []netip.AddrPort{ap("1.2.3.4:80")}, 0, nil},
		{"bad length v4", []byte{1, 2, 3, 4, 5}, compact.Size4, 0, nil, 0, compact.ErrLength},
		{"bad length v6", make([]byte, 19), compact.Size6, 0, nil, 0, compact.ErrLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, trunc, err := compact.Decode(tc.in, tc.size, tc.max)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if !slices.Equal(got, tc.want) || trunc != tc.truncated {
				t.Fatalf("got %v (+%d), want %v (+%d)", got, trunc, tc.want, tc.truncated)
			}
		})
	}
	if _, _, err := compact.Decode(nil, 7, 0); err == nil {
		t.Error("entry size 7 accepted")
	}
}

func TestAppendRoundTrip(t *testing.T) {
	addrs := []netip.AddrPort{
		netip.MustParseAddrPort("1.2.3.4:1"),
		netip.MustParseAddrPort("[2001:db8::2]:65535"),
		netip.MustParseAddrPort("[::ffff:5.6.7.8]:9"),
	}
	v4 := compact.Append(nil, addrs, compact.Size4)
	v6 := compact.Append(nil, addrs, compact.Size6)
	got4, _, err := compact.Decode(v4, compact.Size4, 0)
	if err != nil || !slices.Equal(got4, []netip.AddrPort{addrs[0], netip.MustParseAddrPort("5.6.7.8:9")}) {
		t.Errorf("v4 round trip: %v %v", got4, err)
	}
	got6, _, err := compact.Decode(v6, compact.Size6, 0)
	if err != nil || !slices.Equal(got6, addrs[1:2]) {
		t.Errorf("v6 round trip: %v %v", got6, err)
	}
}
