// Package compact encodes and decodes the compact peer address lists shared
// by HTTP trackers (BEP 23, BEP 7 "peers6"), UDP trackers (BEP 15) and PEX
// (BEP 11): 4- or 16-byte address followed by a big-endian port.
//
// Written by hand because the library equivalent (krpc.CompactIPv4NodeAddrs
// in github.com/anacrolix/dht/v2) decodes every entry by reflection into
// net.IP slices with no bound on the count; here the caller gives a limit and
// gets netip values.
package compact

import (
	"errors"
	"fmt"
	"net/netip"
)

// Entry sizes of the two address families.
const (
	Size4 = 6
	Size6 = 18
)

// ErrLength is returned when a list is not a whole number of entries.
var ErrLength = errors.New("compact peer list length is not a multiple of the entry size")

// Decode decodes a list of entrySize-byte entries (Size4 or Size6). At most
// max entries are returned (max <= 0: no limit); the number left out is
// returned as truncated. IPv4-mapped IPv6 addresses are returned unmapped.
func Decode(b []byte, entrySize, max int) (addrs []netip.AddrPort, truncated int, err error) {
	if entrySize != Size4 && entrySize != Size6 {
		return nil, 0, fmt.Errorf("compact entry size %d: must be %d or %d", entrySize, Size4, Size6)
	}
	if len(b)%entrySize != 0 {
		return nil, 0, fmt.Errorf("%w: %d bytes, entries of %d", ErrLength, len(b), entrySize)
	}
	n := len(b) / entrySize
	if max > 0 && n > max {
		truncated = n - max
		n = max
	}
	if n == 0 {
		return nil, truncated, nil
	}
	addrs = make([]netip.AddrPort, 0, n)
	for i := 0; i < n; i++ {
		e := b[i*entrySize : (i+1)*entrySize]
		ip, _ := netip.AddrFromSlice(e[:entrySize-2])
		port := uint16(e[entrySize-2])<<8 | uint16(e[entrySize-1])
		addrs = append(addrs, netip.AddrPortFrom(ip.Unmap(), port))
	}
	return addrs, truncated, nil
}

// Append appends the compact form of addrs to b: IPv4 addresses as 6-byte
// entries when entrySize is Size4, IPv6 addresses as 18-byte entries when it
// is Size6. Addresses of the other family are skipped.
func Append(b []byte, addrs []netip.AddrPort, entrySize int) []byte {
	for _, a := range addrs {
		if ip := a.Addr().Unmap(); (entrySize == Size4) == ip.Is4() && (entrySize == Size4 || entrySize == Size6) {
			b = AppendAddr(b, a)
		}
	}
	return b
}

// AppendAddr appends one address in the compact form of its own family (BEP
// 23 and BEP 7): the 4 or 16 address bytes (IPv4-mapped addresses unmapped),
// then the port big-endian. It does not allocate beyond growing b.
func AppendAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr().Unmap()
	if ip.Is4() {
		s := ip.As4()
		b = append(b, s[:]...)
	} else {
		s := ip.As16()
		b = append(b, s[:]...)
	}
	return append(b, byte(a.Port()>>8), byte(a.Port()))
}
