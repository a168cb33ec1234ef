package store

import (
	"encoding/binary"
	"fmt"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// The run encoding stores a set of pieces as maximal runs of consecutive
// indices, each run as two unsigned varints:
//
//	first run:  start,                  length-1
//	later runs: start - prevEnd - 2,    length-1
//
// where prevEnd is the last index of the previous run. Because runs are
// maximal, a later run starts at least two past the previous end, so every
// byte string has at most one meaning and every set exactly one encoding (the
// decoder also refuses non-minimal varints). A sequential download is a
// handful of bytes, a seeder 2-4 bytes, a single HAVE 2-4 bytes.
//
// It is hand-written because no library in use offers a compact sorted
// integer set codec; encoding/binary provides the varints.

// maxVarintLen bounds one varint of a piece index (pieces < 2^32).
const maxVarintLen = 5

// encodeRuns appends the run encoding of the pieces in set that are not in
// base (base may be the zero Bitfield for "everything in set").
func encodeRuns(dst []byte, set, base bitfield.Bitfield) []byte {
	idx := set.Gained(base)
	prevEnd := -1
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		start := idx[i]
		if prevEnd < 0 {
			dst = binary.AppendUvarint(dst, uint64(start))
		} else {
			dst = binary.AppendUvarint(dst, uint64(start-prevEnd-2))
		}
		dst = binary.AppendUvarint(dst, uint64(j-i))
		prevEnd = idx[j]
		i = j + 1
	}
	if dst == nil {
		dst = []byte{}
	}
	return dst
}

// readUvarint reads one minimal varint of at most maxVarintLen bytes.
func readUvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, fmt.Errorf("%w: truncated varint", ErrCorruptDelta)
	case n < 0 || n > maxVarintLen:
		return 0, 0, fmt.Errorf("%w: varint too long", ErrCorruptDelta)
	case n > 1 && b[n-1] == 0:
		return 0, 0, fmt.Errorf("%w: non-minimal varint", ErrCorruptDelta)
	}
	return v, n, nil
}

// applyRuns adds the pieces of a run encoding to bf. Every piece must be in
// range and absent from bf (a delta only ever holds gained pieces). On error
// bf may be partly modified; callers apply to a copy.
func applyRuns(bf bitfield.Bitfield, data []byte) error {
	n := uint64(bf.Len())
	next := uint64(0) // smallest index the next run may start at
	first := true
	for off := 0; off < len(data); {
		gap, k, err := readUvarint(data[off:])
		if err != nil {
			return fmt.Errorf("run at byte %d: %w", off, err)
		}
		off += k
		runLen, k, err := readUvarint(data[off:])
		if err != nil {
			return fmt.Errorf("run at byte %d: %w", off, err)
		}
		off += k
		if !first {
			next++ // runs are maximal: one index gap at least
		}
		first = false
		// start = next + gap, end = start + runLen; all bounded by n, which
		// is far below 2^63, so comparing before adding cannot overflow.
		if gap >= n || next >= n-gap {
			return fmt.Errorf("%w: run starts past piece %d", ErrCorruptDelta, n)
		}
		start := next + gap
		if runLen >= n-start {
			return fmt.Errorf("%w: run of %d from piece %d passes piece %d", ErrCorruptDelta, runLen+1, start, n)
		}
		end := start + runLen
		for i := int(start); i <= int(end); i++ {
			if bf.Has(i) {
				return fmt.Errorf("%w: piece %d already present", ErrCorruptDelta, i)
			}
			bf.Set(i)
		}
		next = end + 1
	}
	return nil
}

// The missing-piece encoding of a delta has one bit for each piece the base
// lacks, in index order (most significant bit first), set for the pieces
// gained; spare bits of the last byte are zero. A leecher that gained a
// scattered tenth of its missing pieces between two snapshots costs an
// eighth of a byte per missing piece, where runs cost two bytes per gained
// piece.

// encodeMissing is the missing-piece encoding of the pieces of set not in
// base (set must hold every piece of base).
func encodeMissing(set, base bitfield.Bitfield) []byte {
	out := make([]byte, 0, (base.Len()-base.Count()+7)/8)
	var cur byte
	k := 0
	for i := range base.Len() {
		if base.Has(i) {
			continue
		}
		if set.Has(i) {
			cur |= 0x80 >> (k % 8)
		}
		k++
		if k%8 == 0 {
			out = append(out, cur)
			cur = 0
		}
	}
	if k%8 != 0 {
		out = append(out, cur)
	}
	return out
}

// applyMissing adds to bf (a copy of base) the pieces a missing-piece
// encoding marks.
func applyMissing(bf, base bitfield.Bitfield, data []byte) error {
	missing := base.Len() - base.Count()
	if len(data) != (missing+7)/8 {
		return fmt.Errorf("%w: %d bytes for %d missing pieces", ErrCorruptDelta, len(data), missing)
	}
	k := 0
	for i := range base.Len() {
		if base.Has(i) {
			continue
		}
		if data[k/8]&(0x80>>(k%8)) != 0 {
			bf.Set(i)
		}
		k++
	}
	if k%8 != 0 && data[len(data)-1]&(0xff>>(k%8)) != 0 {
		return fmt.Errorf("%w: spare bits set", ErrCorruptDelta)
	}
	return nil
}
