package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// A batch of HAVE events (the ones one flush commits, for one swarm) is
// stored as one row whose data packs the events in bits: a HAVE row of its
// own cost about 22 bytes, most of them the peer and the microsecond time
// repeated, and a watched peer sends hundreds an hour. Events are sorted by
// peer row id, time and piece; each is
//
//	peer:  exp-Golomb code of order k of (peer id − previous peer id):
//	       the Elias-gamma code of (delta >> k) + 1, then its k low bits
//	time:  wTime bits, time units after the batch's first event
//	piece: wPiece bits
//
// after a byte-aligned header: version (3), first peer id − 1, event count,
// wTime, wPiece, the time unit in microseconds and k (uvarints). The
// writer picks the k that makes the batch shortest: a batch's peers are a
// sample of the swarm's, so their gaps are near the swarm's size over the
// batch's events, and k ≈ log2 of that spends fewer bits on each than
// k = 0 (plain Elias-gamma, which is what version 2 was; version 1 had no
// unit either and meant milliseconds). Times are kept to 10 ms, rounded down
// from the microsecond the watch read the message at: a HAVE's time is when
// the auditor read it, which the network already blurs by as much, and
// every bound that uses it allows for far more (ClockSlack, 2 s:
// docs/estimation.md §2).

// haveEvent is one HAVE of a batch, by peer row id.
type haveEvent struct {
	peer  int64
	atUS  int64
	piece int
}

const (
	haveBatchVersion = 3
	haveTimeUnitUS   = 10_000 // 10 ms
)

// Bounds a stored batch must respect; decoding refuses anything beyond.
const (
	maxBatchEvents = 1 << 20
	maxTimeBits    = 40 // 2^40 units
	maxPieceBits   = 31
	maxPeerOrder   = 40 // k
	maxTimeUnitUS  = 1_000_000
	// With at most 2^40 units of at most a second, an offset stays far
	// below 2^63 µs.
)

var errHaveBatch = errors.New("malformed HAVE batch")

// encodeHaveBatch packs events (at least one) into a batch relative to
// baseUS, which must not be after any event; n is how many it holds (a
// duplicate once).
func encodeHaveBatch(events []haveEvent, baseUS int64) (data []byte, n int) {
	evs := slices.Clone(events)
	for i := range evs { // what the batch keeps of the time
		evs[i].atUS = baseUS + (evs[i].atUS-baseUS)/haveTimeUnitUS*haveTimeUnitUS
	}
	slices.SortFunc(evs, compareHaves)
	evs = slices.Compact(evs)
	var maxUnits int64
	maxPiece := 0
	for _, e := range evs {
		maxUnits = max(maxUnits, (e.atUS-baseUS)/haveTimeUnitUS)
		maxPiece = max(maxPiece, e.piece)
	}
	wTime, wPiece := bits.Len64(uint64(maxUnits)), bits.Len(uint(maxPiece))
	out := []byte{haveBatchVersion}
	out = binary.AppendUvarint(out, uint64(evs[0].peer-1))
	out = binary.AppendUvarint(out, uint64(len(evs)))
	out = binary.AppendUvarint(out, uint64(wTime))
	out = binary.AppendUvarint(out, uint64(wPiece))
	out = binary.AppendUvarint(out, haveTimeUnitUS)
	k := peerOrder(evs)
	out = binary.AppendUvarint(out, uint64(k))
	w := bitWriter{buf: out}
	prev := evs[0].peer - 1
	for _, e := range evs {
		d := uint64(e.peer - prev)
		w.gamma(d>>k + 1)
		w.write(d, k)
		prev = e.peer
		w.write(uint64((e.atUS-baseUS)/haveTimeUnitUS), wTime)
		w.write(uint64(e.piece), wPiece)
	}
	return w.bytes(), len(evs)
}

// peerOrder is the order k of the exp-Golomb code that writes the batch's
// peer deltas in the fewest bits.
func peerOrder(evs []haveEvent) int {
	best, bestBits := 0, -1
	for k := 0; k <= 20; k++ {
		n := 0
		prev := evs[0].peer - 1
		for _, e := range evs {
			n += 2*bits.Len64(uint64(e.peer-prev)>>k+1) - 1 + k
			prev = e.peer
		}
		if bestBits < 0 || n < bestBits {
			best, bestBits = k, n
		}
	}
	return best
}

// decodeHaveBatch unpacks a batch stored with base time baseUS.
func decodeHaveBatch(data []byte, baseUS int64) ([]haveEvent, error) {
	if len(data) == 0 || data[0] < 1 || data[0] > haveBatchVersion {
		return nil, fmt.Errorf("%w: unknown version", errHaveBatch)
	}
	p := data[1:]
	hdr := make([]uint64, 4, 6)
	switch data[0] {
	case 2:
		hdr = hdr[:5]
	case 3:
		hdr = hdr[:6]
	}
	for i := range hdr {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return nil, fmt.Errorf("%w: bad header", errHaveBatch)
		}
		hdr[i], p = v, p[n:]
	}
	first, count, wTime, wPiece := hdr[0], hdr[1], hdr[2], hdr[3]
	unit, k := uint64(1000), uint64(0) // version 1's unit; versions 1 and 2 wrote Elias-gamma: order 0
	if len(hdr) >= 5 {
		unit = hdr[4]
	}
	if len(hdr) == 6 {
		k = hdr[5]
	}
	if first >= 1<<62 || count == 0 || count > maxBatchEvents || wTime > maxTimeBits || wPiece > maxPieceBits || unit == 0 || unit > maxTimeUnitUS || k > maxPeerOrder {
		return nil, fmt.Errorf("%w: header out of range", errHaveBatch)
	}
	// Each event takes at least one bit (its peer delta): a count the data
	// cannot hold is refused before anything is allocated for it.
	if count > uint64(len(p))*8 {
		return nil, fmt.Errorf("%w: %d events in %d bytes", errHaveBatch, count, len(p))
	}
	r := bitReader{buf: p}
	out := make([]haveEvent, 0, count)
	peer := int64(first)
	for range count {
		q, ok := r.gamma()
		low, ok1 := r.read(int(k))
		if !ok || !ok1 || q < 1 || (q-1) > (1<<62)>>k {
			return nil, fmt.Errorf("%w: bad peer", errHaveBatch)
		}
		d := (q-1)<<k | low
		if d > 1<<62-uint64(peer) {
			return nil, fmt.Errorf("%w: bad peer", errHaveBatch)
		}
		peer += int64(d)
		units, ok1 := r.read(int(wTime))
		piece, ok2 := r.read(int(wPiece))
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: truncated", errHaveBatch)
		}
		at := baseUS + int64(units*unit)
		if at < baseUS {
			return nil, fmt.Errorf("%w: time out of range", errHaveBatch)
		}
		out = append(out, haveEvent{peer: peer, atUS: at, piece: int(piece)})
	}
	return out, nil
}

// compareHaves orders events by peer, time and piece: the order of a
// batch, and of Store.Haves.
func compareHaves(a, b haveEvent) int {
	return cmp.Or(cmp.Compare(a.peer, b.peer), cmp.Compare(a.atUS, b.atUS), cmp.Compare(a.piece, b.piece))
}

// bitWriter appends bits, most significant first.
type bitWriter struct {
	buf  []byte
	cur  uint64
	nCur int
}

func (w *bitWriter) write(v uint64, n int) {
	for n > 0 {
		take := min(n, 56-w.nCur)
		w.cur = w.cur<<take | (v>>(n-take))&(1<<take-1)
		w.nCur += take
		n -= take
		for w.nCur >= 8 {
			w.buf = append(w.buf, byte(w.cur>>(w.nCur-8)))
			w.nCur -= 8
		}
		w.cur &= 1<<w.nCur - 1
	}
}

// gamma writes v ≥ 1 in Elias-gamma code: len(v)−1 zeros, then v.
func (w *bitWriter) gamma(v uint64) {
	n := bits.Len64(v)
	w.write(0, n-1)
	w.write(v, n)
}

func (w *bitWriter) bytes() []byte {
	if w.nCur > 0 {
		w.buf = append(w.buf, byte(w.cur<<(8-w.nCur)))
		w.nCur, w.cur = 0, 0
	}
	return w.buf
}

// bitReader reads what bitWriter wrote.
type bitReader struct {
	buf []byte
	pos int // in bits
}

func (r *bitReader) read(n int) (uint64, bool) {
	if n == 0 {
		return 0, true
	}
	if r.pos+n > len(r.buf)*8 {
		return 0, false
	}
	var v uint64
	for range n {
		bit := r.buf[r.pos>>3] >> (7 - r.pos&7) & 1
		v = v<<1 | uint64(bit)
		r.pos++
	}
	return v, true
}

func (r *bitReader) gamma() (uint64, bool) {
	zeros := 0
	for {
		b, ok := r.read(1)
		if !ok {
			return 0, false
		}
		if b == 1 {
			break
		}
		zeros++
		if zeros > 63 {
			return 0, false
		}
	}
	rest, ok := r.read(zeros)
	return 1<<zeros | rest, ok
}
