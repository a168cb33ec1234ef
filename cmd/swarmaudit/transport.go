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

// network opens what --transport needs: unless tcp, a uTP socket, on the
// port of the TCP listener (--peer-listen) if any, as peers expect, else
// on any. With accept it takes incoming uTP connections (the caller hands
// it to its collector: peers introduced to us by holepunch, BEP 55, and
// those that learnt the port connect to it). The caller closes it.
func (fl *transportFlag) network(tcpLn net.Listener, accept bool) (nw peerwire.Network, sock *utp.Socket, err error) {
	t, err := peerwire.ParseTransport(fl.transport)
	if err != nil {
		return nw, nil, usagef("--transport: %w", err)
	}
	nw.Transport = t
	if t == peerwire.TransportTCP {
		return nw, nil, nil
	}
	addr := ":0"
	if tcpLn != nil {
		a := tcpLn.Addr().(*net.TCPAddr)
		addr = net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
	}
	sock, err = utp.Listen("udp", addr, utp.Options{Accept: accept})
	if err != nil {
		return nw, nil, fmt.Errorf("--transport %s: %w", t, err)
	}
	nw.UTP, nw.Transports = sock, peerwire.NewTransportMemo(1<<16)
	return nw, sock, nil
}
