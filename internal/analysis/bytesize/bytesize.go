// Package bytesize is the analysis's arithmetic on byte counts: bounds
// are int64 byte counts that saturate instead of overflowing (an
// unbounded upper bound is math.MaxInt64, and adding to it stays there),
// float results convert back saturating, and counts print with binary
// units in messages and reports.
package bytesize

import (
	"math"
	"strconv"
)

// Add returns a+b, saturating at math.MaxInt64 and math.MinInt64.
func Add(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	if b < 0 && a < math.MinInt64-b {
		return math.MinInt64
	}
	return a + b
}

// FromFloat converts a byte count computed in float64 to int64: NaN and
// values ≤ 0 are 0, values beyond int64 are math.MaxInt64.
func FromFloat(f float64) int64 {
	switch {
	case !(f > 0):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(f)
}

// Format prints a byte count with a binary unit ("1.5 KiB", "1023 B");
// NaN and infinities print as "0 B".
func Format(b float64) string {
	if math.IsNaN(b) || math.IsInf(b, 0) {
		b = 0
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	neg := b < 0
	b = math.Abs(b)
	u := 0
	for b >= 1024 && u < len(units)-1 {
		b /= 1024
		u++
	}
	s := strconv.FormatFloat(b, 'f', 1, 64) + " " + units[u]
	if u == 0 {
		s = strconv.FormatFloat(b, 'f', 0, 64) + " B"
	}
	if neg {
		s = "-" + s
	}
	return s
}
