// Package bitfield holds the set of pieces a peer has, in the wire layout of
// the BitTorrent bitfield message (BEP 3: high bit of the first byte is piece
// 0). Keeping the wire layout lets snapshots be stored and compared without
// conversion.
//
// It is written by hand rather than taken from a library because it is a few
// dozen lines whose layout is fixed by the protocol, and every stage of the
// pipeline (peer wire, timelines, store, simulator) shares it.
package bitfield

import (
	"errors"
	"fmt"
	"math/bits"
)

// ErrSpareBits is returned when a wire bitfield has bits set past the last
// piece, which BEP 3 says must be zero.
var ErrSpareBits = errors.New("bitfield has spare bits set")

// ErrLength is returned when a wire bitfield is not ceil(pieces/8) bytes long.
var ErrLength = errors.New("bitfield has wrong length")

// Bitfield is a fixed-size set of piece indices. The zero value is an empty
// set of zero pieces.
type Bitfield struct {
	n int
	b []byte
}

// New returns an empty bitfield for n pieces.
func New(n int) Bitfield {
	if n < 0 {
		n = 0
	}
	return Bitfield{n: n, b: make([]byte, (n+7)/8)}
}

// Full returns a bitfield for n pieces with every piece set.
func Full(n int) Bitfield {
	bf := New(n)
	for i := range bf.b {
		bf.b[i] = 0xff
	}
	bf.clearSpare()
	return bf
}

// FromWire validates a bitfield message payload for a torrent of n pieces and
// returns a copy of it.
func FromWire(payload []byte, n int) (Bitfield, error) {
	if len(payload) != (n+7)/8 {
		return Bitfield{}, fmt.Errorf("%w: %d bytes for %d pieces", ErrLength, len(payload), n)
	}
	bf := Bitfield{n: n, b: append([]byte(nil), payload...)}
	if n%8 != 0 && len(bf.b) > 0 && bf.b[len(bf.b)-1]&(0xff>>(n%8)) != 0 {
		return Bitfield{}, ErrSpareBits
	}
	return bf, nil
}

// FromBools builds a bitfield of n pieces from a decoded bool slice (as
// peer_protocol decodes it: 8 entries per byte). Entries past n must be false.
func FromBools(v []bool, n int) (Bitfield, error) {
	if len(v) != (n+7)/8*8 {
		return Bitfield{}, fmt.Errorf("%w: %d bits for %d pieces", ErrLength, len(v), n)
	}
	bf := New(n)
	for i, set := range v {
		if !set {
			continue
		}
		if i >= n {
			return Bitfield{}, ErrSpareBits
		}
		bf.Set(i)
	}
	return bf, nil
}

func (bf *Bitfield) clearSpare() {
	if bf.n%8 != 0 && len(bf.b) > 0 {
		bf.b[len(bf.b)-1] &^= 0xff >> (bf.n % 8)
	}
}

// Len is the number of pieces the set ranges over.
func (bf Bitfield) Len() int { return bf.n }

// Has reports whether piece i is in the set; out-of-range indices are not.
func (bf Bitfield) Has(i int) bool {
	if i < 0 || i >= bf.n {
		return false
	}
	return bf.b[i/8]&(0x80>>(i%8)) != 0
}

// Set adds piece i; it reports false if i is out of range.
func (bf Bitfield) Set(i int) bool {
	if i < 0 || i >= bf.n {
		return false
	}
	bf.b[i/8] |= 0x80 >> (i % 8)
	return true
}

// Clear removes piece i; it reports false if i is out of range.
func (bf Bitfield) Clear(i int) bool {
	if i < 0 || i >= bf.n {
		return false
	}
	bf.b[i/8] &^= 0x80 >> (i % 8)
	return true
}

// Count is the number of pieces in the set.
func (bf Bitfield) Count() int {
	c := 0
	for _, x := range bf.b {
		c += bits.OnesCount8(x)
	}
	return c
}

// Complete reports whether every piece is in the set.
func (bf Bitfield) Complete() bool { return bf.Count() == bf.n }

// Clone returns an independent copy.
func (bf Bitfield) Clone() Bitfield {
	return Bitfield{n: bf.n, b: append([]byte(nil), bf.b...)}
}

// Bytes returns the wire form (a copy).
func (bf Bitfield) Bytes() []byte { return append([]byte(nil), bf.b...) }

// Union adds every piece of o (which must range over the same pieces).
func (bf Bitfield) Union(o Bitfield) {
	for i := range bf.b {
		if i < len(o.b) {
			bf.b[i] |= o.b[i]
		}
	}
	bf.clearSpare()
}

// Gained returns the pieces in bf that are not in before.
func (bf Bitfield) Gained(before Bitfield) []int {
	var out []int
	for i := range bf.b {
		var prev byte
		if i < len(before.b) {
			prev = before.b[i]
		}
		diff := bf.b[i] &^ prev
		for diff != 0 {
			lz := bits.LeadingZeros8(diff)
			out = append(out, i*8+lz)
			diff &^= 0x80 >> lz
		}
	}
	return out
}

// Indices lists the pieces in the set in increasing order.
func (bf Bitfield) Indices() []int { return bf.Gained(Bitfield{}) }

// Equal reports whether both sets range over the same pieces and hold the
// same ones.
func (bf Bitfield) Equal(o Bitfield) bool {
	if bf.n != o.n {
		return false
	}
	for i := range bf.b {
		if bf.b[i] != o.b[i] {
			return false
		}
	}
	return true
}
