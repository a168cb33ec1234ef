package utp

import "time"

// LEDBAT (RFC 6817) as BEP 29 applies it: the sender keeps the one-way
// queuing delay of its packets near a target, so that uTP yields to TCP
// and to interactive traffic. The delay samples are the peer's
// timestamp_difference echoes; only their excess over the smallest seen
// in the last two minutes (the base delay) counts, so the clocks' offset
// cancels out.
const (
	ledbatTarget      = 100_000 // µs of queuing delay the sender aims at
	maxCwndIncrease   = 3000    // bytes per RTT at most (libutp's gain)
	minWindow         = 2 * maxPayload
	maxWindow         = 1 << 20
	baseDelayInterval = time.Minute
)

type ledbat struct {
	cwnd      float64 // congestion window in bytes
	slowStart bool
	// base delay: the minimum over the current and the previous minute.
	cur, prev uint32
	curSet    bool
	prevSet   bool
	curStart  time.Time
}

func newLedbat() ledbat { return ledbat{cwnd: minWindow, slowStart: true} }

// baseDelay folds sample into the two-minute minimum and returns it.
func (l *ledbat) baseDelay(sample uint32, now time.Time) uint32 {
	if !l.curSet || now.Sub(l.curStart) >= baseDelayInterval {
		l.prev, l.prevSet = l.cur, l.curSet
		l.cur, l.curSet, l.curStart = sample, true, now
	} else if int32(sample-l.cur) < 0 {
		l.cur = sample
	}
	if l.prevSet && int32(l.prev-l.cur) < 0 {
		return l.prev
	}
	return l.cur
}

// onAck grows or shrinks the window after acked bytes, given the delay
// sample the acking packet carried (0: none).
func (l *ledbat) onAck(acked int, sample uint32, now time.Time) {
	if acked <= 0 {
		return
	}
	if sample == 0 {
		// No delay information: grow as if on target (no increase).
		return
	}
	base := l.baseDelay(sample, now)
	ourDelay := int64(int32(sample - base))
	if ourDelay < 0 {
		ourDelay = 0
	}
	if l.slowStart {
		if ourDelay > ledbatTarget*9/10 {
			l.slowStart = false
		} else {
			l.cwnd += float64(acked)
			l.clamp()
			return
		}
	}
	offTarget := float64(ledbatTarget-ourDelay) / ledbatTarget
	if offTarget < -1 {
		offTarget = -1
	}
	windowFactor := float64(acked) / max(l.cwnd, float64(acked))
	l.cwnd += maxCwndIncrease * windowFactor * offTarget
	l.clamp()
}

// onLoss halves the window (a packet was resent on duplicate acks).
func (l *ledbat) onLoss() {
	l.slowStart = false
	l.cwnd /= 2
	l.clamp()
}

// onTimeout restarts from the smallest window.
func (l *ledbat) onTimeout() {
	l.slowStart = false
	l.cwnd = minWindow
}

func (l *ledbat) clamp() {
	l.cwnd = min(max(l.cwnd, minWindow), maxWindow)
}

// rttEstimator is TCP's (RFC 6298): smoothed RTT and variance give the
// retransmission timeout.
type rttEstimator struct {
	srtt, rttvar time.Duration
	set          bool
}

const (
	initialRTO = time.Second
	minRTO     = 500 * time.Millisecond
	maxRTO     = 30 * time.Second
)

func (r *rttEstimator) sample(d time.Duration) {
	if !r.set {
		r.srtt, r.rttvar, r.set = d, d/2, true
		return
	}
	diff := r.srtt - d
	if diff < 0 {
		diff = -diff
	}
	r.rttvar = (3*r.rttvar + diff) / 4
	r.srtt = (7*r.srtt + d) / 8
}

func (r *rttEstimator) rto() time.Duration {
	if !r.set {
		return initialRTO
	}
	return min(max(r.srtt+4*r.rttvar, minRTO), maxRTO)
}
