package bytesize

import (
	"math"
	"testing"
)

func TestAdd(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{
		{1, 2, 3}, {math.MaxInt64, 1, math.MaxInt64}, {math.MaxInt64 - 1, 5, math.MaxInt64},
		{math.MinInt64, -1, math.MinInt64}, {-5, 3, -2}, {math.MaxInt64, math.MinInt64, -1},
	} {
		if got := Add(c.a, c.b); got != c.want {
			t.Errorf("Add(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestFromFloat(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want int64
	}{{-1, 0}, {math.NaN(), 0}, {1.9, 1}, {1e30, math.MaxInt64}, {math.Inf(1), math.MaxInt64}} {
		if got := FromFloat(c.in); got != c.want {
			t.Errorf("FromFloat(%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {3 << 20, "3.0 MiB"},
		{-2048, "-2.0 KiB"}, {math.NaN(), "0 B"}, {math.Inf(1), "0 B"},
	} {
		if got := Format(c.in); got != c.want {
			t.Errorf("Format(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
