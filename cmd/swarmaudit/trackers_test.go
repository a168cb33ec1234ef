package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestWithoutTrackers(t *testing.T) {
	own := func(u string) bool { return strings.Contains(u, "own") }
	tests := []struct {
		in, want [][]string
	}{
		{nil, nil},
		{[][]string{{"http://own/announce"}}, nil},
		{[][]string{{"http://own/announce"}, {"udp://other:6969"}}, [][]string{{"udp://other:6969"}}},
		{[][]string{{"http://a/announce", "http://own/announce", "http://b/announce"}}, [][]string{{"http://a/announce", "http://b/announce"}}},
	}
	for _, tc := range tests {
		if got := withoutTrackers(tc.in, own); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("withoutTrackers(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPeerRowsFind: rows are found by address; by port only when one row
// has that port (a peer reported under another loopback IP).
func TestPeerRowsFind(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:34807")
	b := netip.MustParseAddrPort("127.0.0.3:34807")
	c := netip.MustParseAddrPort("127.0.0.1:6881")
	rows := peerRows{a: {Verdict: "misreporting"}, b: {Verdict: "ok"}, c: {Verdict: "suspect"}}
	for _, tc := range []struct {
		addr netip.AddrPort
		want string
		ok   bool
	}{
		{a, "misreporting", true},
		{b, "ok", true},
		{netip.MustParseAddrPort("127.0.0.5:6881"), "suspect", true}, // the only row on 6881
		{netip.MustParseAddrPort("127.0.0.5:34807"), "", false},      // two rows on 34807
		{netip.MustParseAddrPort("127.0.0.1:1"), "", false},
	} {
		r, ok := rows.find(tc.addr)
		if ok != tc.ok || r.Verdict != tc.want {
			t.Errorf("find(%s) = %q %v, want %q %v", tc.addr, r.Verdict, ok, tc.want, tc.ok)
		}
	}
}
