//go:build unix

package swarmsim

import (
	"fmt"
	"io"
	"net/netip"
	"syscall"
)

// holdPort binds a TCP socket to addr without listening on it and returns
// it with the bound address. Connections to that address are refused (as
// for a peer behind NAT) and, because the port stays bound, no other
// socket can take it over while the peer runs. Written with syscall
// because the net package has no way to bind without listening.
func holdPort(addr string) (io.Closer, netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	ip := ap.Addr().Unmap()
	family := syscall.AF_INET
	if ip.Is6() {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("socket: %w", err)
	}
	var sa syscall.Sockaddr
	if ip.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
	} else {
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, netip.AddrPort{}, fmt.Errorf("bind: %w", err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	var port int
	switch s := got.(type) {
	case *syscall.SockaddrInet4:
		port = s.Port
	case *syscall.SockaddrInet6:
		port = s.Port
	}
	return fdCloser(fd), netip.AddrPortFrom(ip, uint16(port)), nil
}

type fdCloser int

func (f fdCloser) Close() error { return syscall.Close(int(f)) }
