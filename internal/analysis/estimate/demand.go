package estimate

import (
	"slices"
	"sort"
)

// demand is the coverage of time by possible downloaders: the observed
// peers' possible-gain spans and the present intervals of unobserved peers
// that did not report themselves complete. A peer can only upload while
// somebody else may have been downloading, so its capacity bound counts
// only those times (plus what we downloaded from it ourselves).
//
// The coverage is a list of segments [ts[i], ts[i+1]) with a constant count
// of downloaders; prefix sums of the time covered at least once (any) and
// exactly once (one) answer "how long was anybody but peer k downloading in
// [x, y)" in O(log n): any(x, y) − one(x, y ∩ k's own span).
type demand struct {
	c0  int32 // downloaders before ts[0] (spans starting at −∞)
	ts  []int64
	cnt []int32
	any []float64 // any[i]: time in [ts[0], ts[i]) covered by ≥ 1 downloader
	one []float64 // one[i]: time in [ts[0], ts[i]) covered by exactly 1
}

// newDemand builds the coverage. Infinite ends (timeline.NegInf/PosInf)
// stay out of the segment list, so that the prefix sums add only finite
// lengths and keep nanosecond precision.
func newDemand(spans [][2]int64) demand {
	type event struct {
		t int64
		d int32
	}
	var d demand
	evs := make([]event, 0, 2*len(spans))
	for _, s := range spans {
		if s[0] >= s[1] {
			continue
		}
		if s[0] == negInf {
			d.c0++
		} else {
			evs = append(evs, event{s[0], 1})
		}
		if s[1] != posInf {
			evs = append(evs, event{s[1], -1})
		}
	}
	slices.SortFunc(evs, func(a, b event) int { return cmpInt(a.t, b.t) })
	c := d.c0
	for i := 0; i < len(evs); {
		t := evs[i].t
		for ; i < len(evs) && evs[i].t == t; i++ {
			c += evs[i].d
		}
		d.ts = append(d.ts, t)
		d.cnt = append(d.cnt, c)
	}
	d.any = make([]float64, len(d.ts))
	d.one = make([]float64, len(d.ts))
	for i := 1; i < len(d.ts); i++ {
		l := float64(d.ts[i] - d.ts[i-1])
		d.any[i], d.one[i] = d.any[i-1], d.one[i-1]
		if d.cnt[i-1] >= 1 {
			d.any[i] += l
		}
		if d.cnt[i-1] == 1 {
			d.one[i] += l
		}
	}
	return d
}

func counts(c int32, exactlyOne bool) bool {
	if exactlyOne {
		return c == 1
	}
	return c >= 1
}

// cum is the covered time (by prefix: any or one) from ts[0] to t, negative
// before ts[0]; t is finite.
func (d *demand) cum(prefix []float64, exactlyOne bool, t int64) float64 {
	if len(d.ts) == 0 || t < d.ts[0] {
		if !counts(d.c0, exactlyOne) {
			return 0
		}
		if len(d.ts) == 0 {
			return float64(t)
		}
		return -float64(d.ts[0] - t)
	}
	i := d.seg(t)
	v := prefix[i]
	if counts(d.cnt[i], exactlyOne) {
		v += float64(t - d.ts[i])
	}
	return v
}

// seg is the index of the segment holding t, or −1 before the first.
func (d *demand) seg(t int64) int {
	return sort.Search(len(d.ts), func(i int) bool { return d.ts[i] > t }) - 1
}

// at is the number of possible downloaders at t.
func (d *demand) at(t int64) int {
	i := d.seg(t)
	if i < 0 {
		return int(d.c0)
	}
	return int(d.cnt[i])
}

// busy is how many nanoseconds of [x, y) somebody other than the owner of
// the spans own (a peer's own demand spans, disjoint and sorted, or none)
// may have been downloading.
func (d *demand) busy(x, y int64, own [][2]int64) float64 {
	if y <= x {
		return 0
	}
	v := d.cum(d.any, false, y) - d.cum(d.any, false, x)
	for _, o := range own {
		if a, b := max(x, o[0]), min(y, o[1]); a < b {
			// Where the count is 1 inside the peer's own span, it is the
			// only downloader.
			v -= d.cum(d.one, true, b) - d.cum(d.one, true, a)
		}
	}
	return min(max(v, 0), float64(y-x))
}

// within reports whether t lies in one of the spans (sorted, disjoint).
func within(spans [][2]int64, t int64) bool {
	i := sort.Search(len(spans), func(i int) bool { return spans[i][1] > t })
	return i < len(spans) && spans[i][0] <= t
}

// mergeSpans sorts spans and merges those that overlap or touch; empty
// spans are dropped.
func mergeSpans(spans [][2]int64) [][2]int64 {
	var in [][2]int64
	for _, s := range spans {
		if s[0] < s[1] {
			in = append(in, s)
		}
	}
	slices.SortFunc(in, func(a, b [2]int64) int { return cmpInt(a[0], b[0]) })
	var out [][2]int64
	for _, s := range in {
		if n := len(out); n > 0 && s[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], s[1])
			continue
		}
		out = append(out, s)
	}
	return out
}
