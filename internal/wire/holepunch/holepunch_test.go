package holepunch

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want Msg
		err  bool
	}{
		{"libtorrent's connect, no err_code", []byte{1, 0, 10, 0, 0, 2, 0x1a, 0xe1}, Msg{MsgType: Connect, AddrPort: netip.MustParseAddrPort("10.0.0.2:6881")}, false},
		{"error with its code", []byte{2, 0, 10, 0, 0, 2, 0x1a, 0xe1, 0, 0, 0, 2}, Msg{MsgType: Error, AddrPort: netip.MustParseAddrPort("10.0.0.2:6881"), ErrCode: NotConnected}, false},
		{"ipv6 rendezvous", append(append([]byte{0, 1}, netip.MustParseAddr("::1").AsSlice()...), 0, 80, 0, 0, 0, 0), Msg{MsgType: Rendezvous, AddrPort: netip.MustParseAddrPort("[::1]:80")}, false},
		{"empty", nil, Msg{}, true},
		{"unknown type", []byte{3, 0, 1, 2, 3, 4, 0, 1}, Msg{}, true},
		{"unknown address type", []byte{0, 2, 1, 2, 3, 4, 0, 1}, Msg{}, true},
		{"cut address", []byte{0, 1, 1, 2, 3, 4, 0, 1}, Msg{}, true},
		{"trailing bytes", []byte{1, 0, 1, 2, 3, 4, 0, 1, 9}, Msg{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.b)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse: %+v, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse: %+v, %v; want %+v", got, err, tc.want)
			}
			b, err := Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := Parse(b); err != nil || again != got {
				t.Fatalf("re-read: %+v, %v", again, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{1, 0, 10, 0, 0, 2, 0x1a, 0xe1})
	f.Add([]byte{2, 0, 10, 0, 0, 2, 0x1a, 0xe1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		out, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := Parse(out); err != nil || again != m {
			t.Fatalf("%+v re-reads as %+v, %v", m, again, err)
		}
	})
}
