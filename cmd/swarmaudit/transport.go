package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/utp"
)

// transportFlag is --transport, on every command that connects to peers.
type transportFlag struct{ transport string }

func (fl *transportFlag) register(f *pflag.FlagSet) {
	f.StringVar(&fl.transport, "transport", "auto", "auto (TCP, then uTP for peers TCP did not reach; remembered per peer), tcp or utp (BEP 29)")
}

// network opens what --transport needs: unless tcp, a uTP socket. With a
// TCP listener (--peer-listen) the socket takes the same port, as peers
// expect, and accepts incoming uTP connections there (accepting is true);
// otherwise it takes any port and accepts none. The caller closes it.
func (fl *transportFlag) network(tcpLn net.Listener) (nw peerwire.Network, sock *utp.Socket, accepting bool, err error) {
	t, err := peerwire.ParseTransport(fl.transport)
	if err != nil {
		return nw, nil, false, usagef("--transport: %w", err)
	}
	nw.Transport = t
	if t == peerwire.TransportTCP {
		return nw, nil, false, nil
	}
	addr := ":0"
	if tcpLn != nil {
		a := tcpLn.Addr().(*net.TCPAddr)
		addr, accepting = net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port)), true
	}
	sock, err = utp.Listen("udp", addr, utp.Options{Accept: accepting})
	if err != nil {
		return nw, nil, false, fmt.Errorf("--transport %s: %w", t, err)
	}
	nw.UTP, nw.Transports = sock, peerwire.NewTransportMemo(1<<16)
	return nw, sock, accepting, nil
}
