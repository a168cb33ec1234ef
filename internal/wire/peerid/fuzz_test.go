package peerid

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Seeds live in testdata/fuzz/FuzzClientName.
func FuzzClientName(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var id [20]byte
		copy(id[:], b)
		c := Identify(id)
		s := ClientName(id)
		if s == "" || s != c.String() || !utf8.ValidString(s) {
			t.Fatalf("ClientName(%q) = %q (Identify %+v)", id, s, c)
		}
		if c.Known == strings.HasPrefix(s, "unknown") {
			t.Fatalf("Known = %v for %q", c.Known, s)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", s)
			}
		}
	})
}
