package lsd

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/types/infohash"
)

var (
	ihA = infohash.T{0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 0xff}
	ihB = infohash.T{0xbb}
)

// libtorrentAnnounce is what libtorrent 2.0 sends (lsd.cpp): CRLF lines,
// the group as Host, a cookie.
const libtorrentAnnounce = "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n" +
	"Infohash: aa0102030405060708090a0b0c0d0e0f101112ff\r\ncookie: 5f3a\r\n\r\n\r\n"

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want Announce
		err  string
	}{
		{"libtorrent", libtorrentAnnounce, Announce{Port: 6881, InfoHashes: []infohash.T{ihA}, Cookie: "5f3a"}, ""},
		{"two hashes, LF, odd case", "BT-SEARCH * HTTP/1.1\nport: 1\nINFOHASH: " + ihA.HexString() + "\ninfohash: " + ihB.HexString() + "\n\n",
			Announce{Port: 1, InfoHashes: []infohash.T{ihA, ihB}}, ""},
		{"v2 and bad hashes skipped", "BT-SEARCH * HTTP/1.1\r\nPort: 2\r\nInfohash: " + strings.Repeat("ab", 32) + "\r\nInfohash: zz" + strings.Repeat("0", 38) + "\r\n\r\n",
			Announce{Port: 2}, ""},
		{"not a search", "NOTIFY * HTTP/1.1\r\nPort: 1\r\n\r\n", Announce{}, "not a BT-SEARCH"},
		{"no port", "BT-SEARCH * HTTP/1.1\r\nInfohash: " + ihA.HexString() + "\r\n\r\n", Announce{}, "no port"},
		{"port 0", "BT-SEARCH * HTTP/1.1\r\nPort: 0\r\n\r\n", Announce{}, "port"},
		{"port too big", "BT-SEARCH * HTTP/1.1\r\nPort: 65536\r\n\r\n", Announce{}, "port"},
		{"no colon", "BT-SEARCH * HTTP/1.1\r\nPort 1\r\n\r\n", Announce{}, "colon"},
		{"too long", "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nX: " + strings.Repeat("x", MaxPacket), Announce{}, "at most"},
		{"empty", "", Announce{}, "not a BT-SEARCH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.err != "" {
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrMalformed: %s", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	a := Announce{Port: 51413, InfoHashes: []infohash.T{ihA, ihB}, Cookie: "c00k1e"}
	b := a.Marshal(Group)
	if !strings.HasPrefix(string(b), "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\n") || !strings.HasSuffix(string(b), "\r\n\r\n\r\n") {
		t.Fatalf("%q", b)
	}
	got, err := Parse(b)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("got %+v, %v; want %+v", got, err, a)
	}
}

// FuzzParse: any datagram parses or fails with ErrMalformed, never
// panics, and what parses marshals to a message that parses the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte(libtorrentAnnounce))
	f.Add([]byte("BT-SEARCH * HTTP/1.1\nPort: 1\n\n"))
	f.Add([]byte("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: 00\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if a.Port == 0 || len(a.InfoHashes) > MaxPacket/40 {
			t.Fatalf("parsed %+v", a)
		}
		if strings.ContainsAny(a.Cookie, "\r\n") {
			return // a cookie cannot hold a line break on the way back
		}
		again, err := Parse(a.Marshal(Group))
		if err != nil || !reflect.DeepEqual(again, a) {
			t.Fatalf("round trip of %+v: %+v, %v", a, again, err)
		}
	})
}
