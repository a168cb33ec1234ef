package trackerdb

import (
	"testing"
)

// FuzzDecodeColumns feeds arbitrary column values to the decoders of
// tracker rows (info hash, address, byte counters): they must classify
// them, never panic, and keep counters non-negative.
func FuzzDecodeColumns(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef01234567"))
	f.Add([]byte{10, 0, 0, 1})
	f.Add([]byte("2001:db8::1"))
	f.Add([]byte("-5"))
	f.Add([]byte("18446744073709551615"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ih, ok := infoHash(b); ok && len(b) == 20 && string(ih[:]) != string(b) {
			t.Fatalf("binary info hash %x read as %x", b, ih)
		}
		if a := parseIP(b); a.IsValid() && a.Is4In6() {
			t.Fatalf("address %v not unmapped", a)
		}
		for _, v := range []any{b, int64(len(b)) - 10, uint64(len(b)) << 60, nil} {
			var c counter
			if err := c.Scan(v); err == nil && c < 0 {
				t.Fatalf("counter %v scanned as %d", v, c)
			}
		}
	})
}
