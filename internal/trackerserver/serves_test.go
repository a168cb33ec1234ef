package trackerserver

import (
	"net/netip"
	"net/url"
	"strconv"
	"testing"
)

// TestServes: the server recognises announce URLs that point at itself, so
// that the audit does not announce to its own embedded tracker.
func TestServes(t *testing.T) {
	s, _ := startServer(t, Config{HTTPAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0"})
	hu, _ := url.Parse(s.HTTPURL())
	uu, _ := url.Parse(s.UDPURL())
	hp, up := hu.Port(), uu.Port()
	other := strconv.Itoa(int(netip.MustParseAddrPort(hu.Host).Port()) + 1)
	if hp == up {
		t.Logf("HTTP and UDP share port %s", hp)
	}
	all, _ := startServer(t, Config{HTTPAddr: "0.0.0.0:0"})
	au, _ := url.Parse(all.HTTPURL())
	ap := au.Port()
	tests := []struct {
		srv  *Server
		url  string
		want bool
	}{
		{s, s.HTTPURL(), true},
		{s, s.UDPURL(), true},
		{s, "http://localhost:" + hp + "/announce", true},
		{s, "http://127.0.0.1:" + hp + "/x/passkey/announce", true},
		{s, "https://127.0.0.1:" + hp + "/announce", true},
		{s, "http://127.0.0.2:" + hp + "/announce", false},    // another address
		{s, "http://127.0.0.1:" + other + "/announce", false}, // another port
		{s, "udp://127.0.0.1:" + hp + "/announce", hp == up},  // the UDP listener's port
		{s, "http://tracker.example:" + hp + "/announce", false},
		{s, "wss://127.0.0.1:" + hp + "/announce", false},
		{s, "::not a url", false},
		{all, "http://127.0.0.1:" + ap + "/announce", true}, // listening on every address
		{all, "http://127.0.0.9:" + ap + "/announce", true},
		{all, "http://[::1]:" + ap + "/announce", true},
		{all, "udp://127.0.0.1:" + ap + "/announce", false},  // no UDP listener
		{all, "http://192.0.2.1:" + ap + "/announce", false}, // not a local address
	}
	for _, tc := range tests {
		if got := tc.srv.Serves(tc.url); got != tc.want {
			t.Errorf("Serves(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}
