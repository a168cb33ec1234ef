//go:build !unix

package swarmsim

import (
	"io"
	"net"
	"net/netip"
)

// holdPort reserves a port by listening on it and closing the listener at
// once: connections to it are refused, though another socket may later
// take the port (on Unix a bound, non-listening socket keeps it).
func holdPort(addr string) (io.Closer, netip.AddrPort, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return io.NopCloser(nil), ap, nil
}
