package torrentmeta

import (
	"encoding/base32"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/types/infohash"
)

const (
	hexHash = "079613d8f1b4998a954f396e6cf7c8e6e7196b4b"
	// 32-byte SHA-256 multihash (0x12 0x20 prefix) of the v2only fixture.
	btmh = "1220" + "16d17a54b672f871a286a68de75b0eab0fde5dae9a291ff046914dc1f42ed449"
)

func TestParseMagnet(t *testing.T) {
	ih := mustHash(t, hexHash)
	b32 := base32.StdEncoding.EncodeToString(ih[:])
	tests := []struct {
		name string
		uri  string
		want Magnet
	}{
		{"hex", "magnet:?xt=urn:btih:" + hexHash, Magnet{InfoHash: ih}},
		{"upper hex, upper scheme", "MAGNET:?xt=URN:BTIH:" + strings.ToUpper(hexHash), Magnet{InfoHash: ih}},
		{"base32", "magnet:?xt=urn:btih:" + b32, Magnet{InfoHash: ih}},
		{"lowercase base32", "magnet:?xt=urn:btih:" + strings.ToLower(b32), Magnet{InfoHash: ih}},
		{"hybrid xt pair", "magnet:?xt=urn:btmh:" + btmh + "&xt=urn:btih:" + hexHash, Magnet{InfoHash: ih, InfoHashV2: v2Hash(t), V2: true}},
		{"btmh only: the truncated v2 hash names the swarm", "magnet:?xt=urn:btmh:" + btmh, Magnet{InfoHash: truncated(v2Hash(t)), InfoHashV2: v2Hash(t), V2: true}},
		{"same btih twice", "magnet:?xt=urn:btih:" + hexHash + "&xt=urn:btih:" + b32, Magnet{InfoHash: ih}},
		{"other xt ignored", "magnet:?xt=urn:ed2k:abcd&xt=urn:btih:" + hexHash, Magnet{InfoHash: ih}},
		{
			"everything",
			"magnet:?xt=urn:btih:" + hexHash + "&dn=My+File%20%C3%A9&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce" +
				"&tr=udp://127.0.0.1:6969&tr=udp://127.0.0.1:6969&tr=&x.pe=127.0.0.1:6881&x.pe=[::1]:51413&ws=http://x/",
			Magnet{
				InfoHash: ih, Name: "My File é",
				Trackers: []string{"http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"},
				Peers:    []string{"127.0.0.1:6881", "[::1]:51413"},
			},
		},
		{"first dn wins", "magnet:?xt=urn:btih:" + hexHash + "&dn=a&dn=b", Magnet{InfoHash: ih, Name: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMagnet(tt.uri)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*m, tt.want) {
				t.Fatalf("got %+v, want %+v", *m, tt.want)
			}
			back, err := ParseMagnet(m.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", m.String(), err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Errorf("round trip via %q = %+v, want %+v", m.String(), back, m)
			}
		})
	}
}

func TestParseMagnetErrors(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		is   error
		msg  string
	}{
		{"empty", "", ErrInvalidMagnet, "scheme"},
		{"http scheme", "http://127.0.0.1/?xt=urn:btih:" + hexHash, ErrInvalidMagnet, `scheme is "http"`},
		{"no xt", "magnet:?dn=x", ErrInvalidMagnet, "no xt=urn:btih: or xt=urn:btmh:"},
		{"btmh of another hash function", "magnet:?xt=urn:btmh:1114" + strings.Repeat("0", 40), ErrInvalidMagnet, "want 68"},
		{"btmh not hex", "magnet:?xt=urn:btmh:1220" + strings.Repeat("zz", 32), ErrInvalidMagnet, "decode btmh"},
		{"conflicting btmh", "magnet:?xt=urn:btmh:" + btmh + "&xt=urn:btmh:1220" + strings.Repeat("0", 64), ErrInvalidMagnet, "conflicting btmh"},
		{"short hash", "magnet:?xt=urn:btih:abcd", ErrInvalidMagnet, "4 characters"},
		{"bad hex", "magnet:?xt=urn:btih:" + strings.Repeat("zz", 20), ErrInvalidMagnet, "decode info hash"},
		{"bad base32", "magnet:?xt=urn:btih:" + strings.Repeat("1", 32), ErrInvalidMagnet, "decode info hash"},
		{"conflicting btih", "magnet:?xt=urn:btih:" + hexHash + "&xt=urn:btih:" + strings.Repeat("0", 40), ErrInvalidMagnet, "conflicting"},
		{"bad escape", "magnet:?xt=urn:btih:" + hexHash + "&dn=%zz", ErrInvalidMagnet, "query"},
		{"bad uri", "magnet:?xt=urn:btih:" + hexHash + "\x7f", ErrInvalidMagnet, "invalid control character"},
		{"peer without port", "magnet:?xt=urn:btih:" + hexHash + "&x.pe=127.0.0.1", ErrInvalidMagnet, "x.pe"},
		{"peer port zero", "magnet:?xt=urn:btih:" + hexHash + "&x.pe=127.0.0.1:0", ErrInvalidMagnet, "bad port"},
		{"peer port too big", "magnet:?xt=urn:btih:" + hexHash + "&x.pe=127.0.0.1:65536", ErrInvalidMagnet, "bad port"},
		{"peer empty host", "magnet:?xt=urn:btih:" + hexHash + "&x.pe=:6881", ErrInvalidMagnet, "empty host"},
		{"too long", "magnet:?xt=urn:btih:" + hexHash + "&dn=" + strings.Repeat("a", MaxMagnetLength), ErrInvalidMagnet, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMagnet(tt.uri)
			if err == nil {
				t.Fatalf("no error; got %+v", m)
			}
			t.Log(err)
			if !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestMagnetString(t *testing.T) {
	m := &Magnet{
		InfoHash: mustHash(t, hexHash),
		Name:     "a b&c",
		Trackers: []string{"http://127.0.0.1:6969/announce?x=1&y=2"},
		Peers:    []string{"127.0.0.1:6881"},
	}
	want := "magnet:?xt=urn:btih:" + hexHash +
		"&dn=a+b%26c&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce%3Fx%3D1%26y%3D2&x.pe=127.0.0.1%3A6881"
	if got := m.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	if got, want := (&Magnet{InfoHash: m.InfoHash}).String(), "magnet:?xt=urn:btih:"+hexHash; got != want {
		t.Errorf("bare String() = %s, want %s", got, want)
	}
}

// v2Hash is the SHA-256 of the btmh test value.
func v2Hash(t *testing.T) [32]byte {
	t.Helper()
	b, err := hex.DecodeString(btmh[4:])
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(b)
}

func truncated(h [32]byte) infohash.T { return infohash.T(h[:20]) }
