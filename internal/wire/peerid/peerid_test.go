package peerid

import (
	"strings"
	"testing"
)

// id pads prefix to 20 bytes with fixed filler.
func id(prefix string) [20]byte {
	var b [20]byte
	copy(b[:], prefix+"k3j5h2g7f8d9s0a1q2w3e4r5")
	return b
}

func TestClientName(t *testing.T) {
	tests := []struct {
		prefix string
		want   string
	}{
		// Transmission, all its schemes.
		{"-TR3000-", "Transmission 3.00"},
		{"-TR300Z-", "Transmission 3.00+ (dev)"},
		{"-TR111Z-", "Transmission 1.11+ (dev)"},
		{"-TR294B-", "Transmission 2.94 (beta)"},
		{"-TR0072-", "Transmission 0.72"},
		{"-TR0006-", "Transmission 0.6"},
		{"-TR4050-", "Transmission 4.0.5"},
		{"-TR410Z-", "Transmission 4.1.0 (dev)"},
		{"-TR400B-", "Transmission 4.0.0 (beta)"},
		{"-TR4A00-", "Transmission 4.10.0"},
		// libtorrent fingerprints (base 36 above 9).
		{"-LT2080-", "libtorrent (Rasterbar) 2.0.8"},
		{"-LT12F0-", "libtorrent (Rasterbar) 1.2.15"},
		{"-lt0D60-", "libTorrent (rakshasa) 0.13.6"},
		{"-qB4520-", "qBittorrent 4.5.2"},
		{"-qB45C0-", "qBittorrent 4.5.12"},
		{"-DE2110-", "Deluge 2.1.1"},
		{"-DE13F0-", "Deluge 1.3.15"},
		// µTorrent family.
		{"-UT3550-", "µTorrent 3.5.5"},
		{"-UT355B-", "µTorrent 3.5.5 (beta)"},
		{"-UT3315B", "µTorrent 3.3.15 (beta)"},
		{"-UTA100-", "µTorrent 10.1.0"},
		{"-UM1870-", "µTorrent Mac 1.8.7"},
		{"-BT7A50-", "BitTorrent 7.10.5"},
		// Four-digit clients.
		{"-AZ5750-", "Vuze 5.7.5.0"},
		{"-AZ2504-", "Azureus 2.5.0.4"},
		{"-BI3400-", "BiglyBT 3.4.0.0"},
		{"-GT0003-", "anacrolix/torrent 0.0.0.3"},
		{"-XL0012-", "Xunlei 0.0.1.2"},
		// Others.
		{"-KT4310-", "KTorrent 4.3.1"},
		{"-KT44D1-", "KTorrent 4.4 dev 1"},
		{"-KT43R2-", "KTorrent 4.3 RC 2"},
		{"-FD6100-", "Free Download Manager 6.1.0"},
		{"-TX0193-", "Tixati 1.93"},
		{"TIX0193-", "Tixati 1.93"},
		{"-BC0150-", "BitComet 1.50"},
		{"-BN0001-", "Baidu Netdisk"},
		{"-SA0100-", "swarmaudit 0.1.0"},
		{"XBT054d-", "XBT Client 0.5.4 (debug)"},
		// Mainline style.
		{"M7-2-2--", "Mainline 7.2.2"},
		{"M7-10-3-", "Mainline 7.10.3"},
		{"M4-4-0--", "Mainline 4.4.0"},
		{"Q1-10-0-", "Queen Bee 1.10.0"},
		// aria2.
		{"A2-1-36-0-", "aria2 1.36.0"},
		{"A2-1-18-10-", "aria2 1.18.10"},
		{"aria2-", "aria2"},
		{"A2-x-y-", `aria2 version "x-y-k3j"`},
		// Shad0w style.
		{"S58B-----", "Shad0w 5.8.11"},
		{"T03I-----", "BitTornado 0.3.18"},
		{"T03A-----", "BitTornado 0.3.10"},
		{"A310-----", "ABC 3.1.0"},
		{"O0-----", ""}, // id[6:9] = "--k": not Shad0w; falls through to unknown
		{"R1.0.0---", "Tribler 1.62.0.62.0"},
		{"U8.5.----", "UPnP NAT Bit Torrent 8.62.5.62"},
		{"Q1-0-0---", "Queen Bee 1.0.0"},
		// BitComet before Azureus style.
		{"exbc\x00\x3a", "BitComet 0.58"},
		{"exbc\x00\x3aLORD", "BitLord 0.58"},
		{"FUTB\x01\x02", "BitComet (Solidox mod) 1.02"},
		// Known code, undecodable version.
		{"-TR3?0Z-", `Transmission version "3?0Z"`},
		{"-UTzz0-", `µTorrent version "zz0-"`},
		{"-LT\x00\x01\x02\x03-", `libtorrent (Rasterbar) version "%00%01%02%03"`},
		// Unknown Azureus code: shown raw.
		{"-XY1234-", "unknown -XY1234-"},
		{"-zz9999-", "unknown -zz9999-"},
		// Not Azureus style after all, or nothing known.
		{"-XY12345", "unknown 2d58593132333435"},
		{"-XY\x001234-", "unknown 2d58590031323334"},
		{"\x00\x01\x02\x03\x04\x05\x06\x07", "unknown 0001020304050607"},
		{"hello world", "unknown 68656c6c6f20776f"},
		{"", "unknown 6b336a3568326737"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got := ClientName(id(tt.prefix))
			want := tt.want
			if want == "" {
				want = "unknown " + hexPrefix(id(tt.prefix))
			}
			if got != want {
				t.Errorf("ClientName(%q) = %q, want %q", tt.prefix, got, want)
			}
			c := Identify(id(tt.prefix))
			if c.Known == strings.HasPrefix(want, "unknown") {
				t.Errorf("Known = %v for %q", c.Known, want)
			}
		})
	}
}

func hexPrefix(b [20]byte) string {
	const digits = "0123456789abcdef"
	var s []byte
	for _, c := range b[:8] {
		s = append(s, digits[c>>4], digits[c&15])
	}
	return string(s)
}

func TestClientNameAllBytes(t *testing.T) {
	// Every first byte with several follow-ups must decode without panic
	// to a non-empty name; this walks all decoders' guard paths.
	for first := range 256 {
		for _, rest := range []string{"", "-------", "TR3000-", "2-3-4--", "\xff\xff\xff\xff\xff\xff\xff", "00000000000000000000"} {
			var b [20]byte
			b[0] = byte(first)
			copy(b[1:], rest)
			if s := ClientName(b); s == "" {
				t.Fatalf("empty name for %q", b)
			}
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		prefix, wantPrefix string
	}{
		{Prefix, Prefix},
		{"", ""},
		{"-XX0001-", "-XX0001-"},
		{strings.Repeat("p", 25), strings.Repeat("p", 20)},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			a, b := New(tt.prefix), New(tt.prefix)
			if !strings.HasPrefix(string(a[:]), tt.wantPrefix) {
				t.Errorf("New(%q) = %q", tt.prefix, a)
			}
			for _, c := range a[len(tt.wantPrefix):] {
				if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", rune(c)) {
					t.Errorf("New(%q) = %q: byte %q outside base32 alphabet", tt.prefix, a, c)
				}
			}
			// 12 random base32 characters collide with probability 2^-60.
			if len(tt.wantPrefix) < 20 && a == b {
				t.Errorf("two calls gave the same id %q", a)
			}
		})
	}
	if got := ClientName(New(Prefix)); got != "swarmaudit 0.1.0" {
		t.Errorf("ClientName(New(Prefix)) = %q", got)
	}
}
