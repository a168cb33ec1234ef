package testclients

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/mse"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// probePeerID identifies this package's readiness probes in client logs.
var probePeerID = [20]byte([]byte("-SA0000-readyprobe00"))

// ProbeSource is the source address of the readiness probe (see
// Options.Seed) outside a network namespace. It is a loopback address tests
// are unlikely to use: some clients (Transmission) accept only one
// connection per peer IP, so a probe from 127.0.0.1 could make a test's own
// connection from there be refused.
const ProbeSource = "127.255.255.254"

var probeSource = netip.MustParseAddr(ProbeSource)

// probeHandshake connects from src (any address when src is zero) to a
// client's peer port and completes a
// BitTorrent handshake for ih: inside MSE with RC4 when the client requires
// encryption, plaintext otherwise. It proves the client accepts peers for
// the torrent, which its API can claim a moment before it does
// (libtorrent-based clients drop connections for a short while after the hash
// check). The connection is closed right after the handshake.
func probeHandshake(ctx context.Context, addr netip.AddrPort, ih [20]byte, enc Encryption, src netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return fmt.Errorf("probe %s: %w", addr, err)
		}
	}
	var rw interface {
		Read([]byte) (int, error)
		Write([]byte) (int, error)
	} = conn
	if enc == EncRequired {
		erw, _, err := mse.InitiateHandshakeContext(ctx, conn, ih[:], nil, mse.CryptoMethodRC4)
		if err != nil {
			return fmt.Errorf("probe %s: MSE handshake: %w", addr, err)
		}
		rw = erw
	}
	h := metainfo.Hash(ih)
	if _, err := pp.Handshake(ctx, rw, &h, probePeerID, pp.PeerExtensionBits{}); err != nil {
		return fmt.Errorf("probe %s: handshake: %w", addr, err)
	}
	return nil
}
