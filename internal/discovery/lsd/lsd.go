// Package lsd is BEP 14 Local Service Discovery: clients on one local
// network multicast a small HTTP-like "BT-SEARCH" message to
// 239.192.152.143:6771 naming the info hashes they share and the port they
// listen on. Listening for them tells an auditor on that network which
// local peers are in the swarm, peers no tracker or DHT may have listed;
// announcing its own port lets them connect to it. BEP 27 forbids it for
// private torrents: the caller does not run it for those.
//
// Everything received is hostile: a datagram is read into a fixed buffer,
// parsed within MaxPacket bytes and either yields a peer
// or is dropped.
package lsd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/anacrolix/torrent/types/infohash"
	"golang.org/x/net/ipv4"
	"golang.org/x/sync/errgroup"
)

// Group is BEP 14's IPv4 multicast group and port.
var Group = netip.MustParseAddrPort("239.192.152.143:6771")

const (
	// MaxPacket bounds an announce: BEP 14 messages fit one unfragmented
	// datagram.
	MaxPacket = 1400
	// DefaultEvery is how often Run announces (libtorrent's interval);
	// BEP 14 asks for at most one announce a minute per torrent.
	DefaultEvery = 5 * time.Minute
	// minEvery is the shortest interval Run accepts.
	minEvery = time.Minute
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed LSD announce")

// Announce is one BT-SEARCH message.
type Announce struct {
	// Port is the sender's BitTorrent listen port.
	Port       uint16
	InfoHashes []infohash.T
	// Cookie lets a sender recognise its own announces (optional).
	Cookie string
}

// Parse reads one BT-SEARCH message. Header names are case-insensitive,
// lines end in CRLF (a bare LF is accepted), Infohash may repeat; info
// hashes that are not 40 hex digits are skipped.
func Parse(b []byte) (Announce, error) {
	var a Announce
	if len(b) > MaxPacket {
		return a, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), MaxPacket)
	}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	if strings.TrimSpace(lines[0]) != "BT-SEARCH * HTTP/1.1" {
		return a, fmt.Errorf("%w: not a BT-SEARCH request", ErrMalformed)
	}
	port := false
	for _, l := range lines[1:] {
		if l == "" {
			break // end of the headers
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return a, fmt.Errorf("%w: header line without a colon", ErrMalformed)
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "port":
			p, err := strconv.ParseUint(value, 10, 16)
			if err != nil || p == 0 {
				return a, fmt.Errorf("%w: port %q", ErrMalformed, value)
			}
			a.Port, port = uint16(p), true
		case "infohash": // at most MaxPacket/52 of them
			var ih infohash.T
			if len(value) != 40 {
				continue // a v2 hash or garbage: not ours to read
			}
			if _, err := hex.Decode(ih[:], []byte(value)); err != nil {
				continue
			}
			a.InfoHashes = append(a.InfoHashes, ih)
		case "cookie":
			a.Cookie = value
		}
	}
	if !port {
		return a, fmt.Errorf("%w: no port", ErrMalformed)
	}
	return a, nil
}

// Marshal writes the message as BEP 14 gives it, for the group host.
func (a Announce) Marshal(host netip.AddrPort) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "BT-SEARCH * HTTP/1.1\r\nHost: %s\r\nPort: %d\r\n", host, a.Port)
	for _, ih := range a.InfoHashes {
		fmt.Fprintf(&b, "Infohash: %s\r\n", ih.HexString())
	}
	if a.Cookie != "" {
		fmt.Fprintf(&b, "cookie: %s\r\n", a.Cookie)
	}
	b.WriteString("\r\n\r\n")
	return b.Bytes()
}

// Config configures Run.
type Config struct {
	InfoHash infohash.T
	// Port is the auditor's listen port, announced every Every; 0 listens
	// only.
	Port uint16
	// Interface is the network interface to listen and announce on (nil:
	// the system's choice).
	Interface *net.Interface
	// Group is the multicast group (Group if zero).
	Group netip.AddrPort
	// Every is the announce interval (DefaultEvery if 0; at least a
	// minute).
	Every  time.Duration
	Logger *slog.Logger
}

// Run listens for announces of cfg.InfoHash until ctx ends and calls found
// with each sender's address (its source IP and announced port), always
// from one goroutine; its own announces (by cookie) are skipped. With a Port
// it announces that too, at once and every Every. It returns nil when ctx
// ended, or why it could not listen.
func Run(ctx context.Context, cfg Config, found func(netip.AddrPort)) error {
	if !cfg.Group.IsValid() {
		cfg.Group = Group
	}
	if !cfg.Group.Addr().Is4() || !cfg.Group.Addr().IsMulticast() {
		return fmt.Errorf("lsd: group %s is not an IPv4 multicast address", cfg.Group)
	}
	if cfg.Every == 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Every < minEvery {
		return fmt.Errorf("lsd: announce interval %s: at least %s (BEP 14)", cfg.Every, minEvery)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	conn, err := net.ListenMulticastUDP("udp4", cfg.Interface, net.UDPAddrFromAddrPort(cfg.Group))
	if err != nil {
		return fmt.Errorf("lsd: listen on %s: %w", cfg.Group, err)
	}
	pc := ipv4.NewPacketConn(conn)
	// On the local network only; with the interface asked for.
	if err := pc.SetMulticastTTL(1); err != nil {
		conn.Close()
		return fmt.Errorf("lsd: %w", err)
	}
	if cfg.Interface != nil {
		if err := pc.SetMulticastInterface(cfg.Interface); err != nil {
			conn.Close()
			return fmt.Errorf("lsd: interface %s: %w", cfg.Interface.Name, err)
		}
	}
	var c [8]byte
	rand.Read(c[:])
	cookie := hex.EncodeToString(c[:])
	g, gctx := errgroup.WithContext(ctx)
	stop := context.AfterFunc(gctx, func() { conn.Close() })
	defer stop()
	if cfg.Port != 0 {
		msg := Announce{Port: cfg.Port, InfoHashes: []infohash.T{cfg.InfoHash}, Cookie: cookie}.Marshal(cfg.Group)
		g.Go(func() error {
			t := time.NewTicker(cfg.Every)
			defer t.Stop()
			for {
				conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.WriteToUDPAddrPort(msg, cfg.Group); err != nil && gctx.Err() == nil {
					cfg.Logger.Warn("lsd: announce failed", "group", cfg.Group, "err", err)
				}
				select {
				case <-gctx.Done():
					return nil
				case <-t.C:
				}
			}
		})
	}
	g.Go(func() error {
		buf := make([]byte, MaxPacket+1)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if gctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("lsd: read: %w", err)
			}
			a, err := Parse(buf[:n])
			if err != nil {
				cfg.Logger.Debug("lsd: dropped a datagram", "from", src, "err", err)
				continue
			}
			if a.Cookie == cookie {
				continue // our own, looped back
			}
			for _, ih := range a.InfoHashes {
				if ih == cfg.InfoHash {
					found(netip.AddrPortFrom(src.Addr().Unmap(), a.Port))
					break
				}
			}
		}
	})
	return g.Wait()
}
