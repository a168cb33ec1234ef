package probe

import (
	"math"
	"sort"
)

// rampFraction of the received bytes is treated as ramp-up and left out of
// the steady-state estimate: the first blocks ride on TCP slow start and on
// the burst allowance of the peer's rate limiter, and would inflate it.
const rampFraction = 0.25

// unchokedArrivals is a sorted copy of the blocks that came while we were
// unchoked: a peer serves allowed-fast pieces (BEP 6) outside its unchoke
// slots, as slowly as it likes (libtorrent trickles them to a choked peer),
// so only what it sent an unchoked peer measures what it can upload.
func unchokedArrivals(arr []arrival) []arrival {
	out := make([]arrival, 0, len(arr))
	for _, a := range arr {
		if !a.choked {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// throughput estimates the steady-state rate from the block arrivals
// received while unchoked (unchokedArrivals): it drops the ramp-up and
// divides the remaining bytes by the time they took. The spread is the relative standard error of that rate: the coefficient of
// variation of the rate over up to eight equal-byte segments of the steady
// part, divided by √segments. It returns 0s when fewer than three blocks
// arrived.
func throughput(arr []arrival) (rate, spread float64, segments int) {
	arr = unchokedArrivals(arr)
	if len(arr) < 3 {
		return 0, 0, 0
	}
	var total int64
	for _, a := range arr {
		total += a.n
	}
	// cut is the arrival that ends the ramp-up; its time starts the clock and
	// its bytes are not counted (they were in flight before the clock ran).
	cut, acc := 0, int64(0)
	for i, a := range arr {
		acc += a.n
		if float64(acc) >= rampFraction*float64(total) {
			cut = i
			break
		}
	}
	cut = min(cut, len(arr)-2)
	steady := arr[cut:]
	rate = rateOf(steady)
	if rate == 0 {
		return 0, 0, 0
	}
	k := min(8, (len(steady)-1)/4)
	if k < 2 {
		return rate, 0, 1
	}
	var steadyBytes int64
	for _, a := range steady[1:] {
		steadyBytes += a.n
	}
	var rates []float64
	start, acc := 0, int64(0)
	for i := 1; i < len(steady); i++ {
		acc += steady[i].n
		if float64(acc) >= float64(len(rates)+1)*float64(steadyBytes)/float64(k) || i == len(steady)-1 {
			if r := rateOf(steady[start : i+1]); r > 0 {
				rates = append(rates, r)
			}
			start = i
		}
	}
	if len(rates) < 2 {
		return rate, 0, len(rates)
	}
	var mean, sq float64
	for _, r := range rates {
		mean += r
	}
	mean /= float64(len(rates))
	for _, r := range rates {
		sq += (r - mean) * (r - mean)
	}
	cv := math.Sqrt(sq/float64(len(rates)-1)) / mean
	return rate, cv / math.Sqrt(float64(len(rates))), len(rates)
}

// rateOf is the bytes after the first arrival divided by the time from the
// first to the last arrival.
func rateOf(a []arrival) float64 {
	if len(a) < 2 {
		return 0
	}
	d := a[len(a)-1].at.Sub(a[0].at).Seconds()
	if d <= 0 {
		return 0
	}
	var n int64
	for _, x := range a[1:] {
		n += x.n
	}
	return float64(n) / d
}
