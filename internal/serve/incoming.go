package serve

import (
	"context"
	"net"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// With Config.Listener the service takes incoming peer connections for
// all its swarms on one port — announced to every torrent's trackers, so
// that peers behind a NAT, which cannot be connected to, connect to the
// auditor. The service completes the handshake (plaintext or MSE, whose
// responder finds the torrent among every swarm's info hash) and hands
// the connection over to the collector of the swarm it names, which owns
// it from then on (collect.Config.Incoming).
const (
	maxAcceptHandshakes = 32               // incoming handshakes at once
	acceptTimeout       = 20 * time.Second // per handshake
	incomingQueue       = 8                // handed-over connections a swarm's collector has not taken yet
)

// acceptLoop answers incoming connections until ctx ends; it closes the
// listener then. Run waits for it and for every handshake it started.
func (s *Service) acceptLoop(ctx context.Context, ln net.Listener) {
	defer s.wg.Done()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	sem := make(chan struct{}, maxAcceptHandshakes)
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("incoming connections: listener failed", "err", err)
			}
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			raw.Close() // too many handshakes at once
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-sem }()
			s.handOver(ctx, raw)
		}()
	}
}

// handOver completes one incoming handshake and gives the connection to
// its swarm's collector, or closes it.
func (s *Service) handOver(ctx context.Context, raw net.Conn) {
	hctx, cancel := context.WithTimeout(ctx, acceptTimeout)
	defer cancel()
	conn, err := peerwire.Accept(hctx, raw, peerwire.AcceptConfig{
		PeerID: s.cfg.Collect.PeerID,
		Known: func(h infohash.T) bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.swarms[h] != nil
		},
		InfoHash: func(yield func(infohash.T) bool) {
			s.mu.Lock()
			hashes := make([]infohash.T, 0, len(s.swarms))
			for h := range s.swarms {
				hashes = append(hashes, h)
			}
			s.mu.Unlock()
			for _, h := range hashes {
				if !yield(h) {
					return
				}
			}
		},
		AllowPlaintext: true, AllowMSEPlaintext: true,
		Private: true, // which swarm is not known yet: no DHT bit (BEP 27)
	})
	if err != nil {
		s.log.Debug("incoming refused", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.swarms[conn.InfoHash]
	if sw == nil {
		conn.Close() // dropped meanwhile
		return
	}
	select {
	case sw.incoming <- conn: // the collector owns it now
	default:
		conn.Close()
	}
}

// closeHandedOver closes connections left in the swarms' queues once
// every collector has ended; called by Run after waiting for them.
func (s *Service) closeHandedOver() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sw := range s.swarms {
		for {
			select {
			case conn := <-sw.incoming:
				conn.Close()
				continue
			default:
			}
			break
		}
	}
}

// Self names the auditor to the embedded tracker's peers
// (trackerserver.Config.Self): the listener's port, for the swarms this
// service audits.
func (s *Service) Self(ih infohash.T) (port uint16, peerID [20]byte, ok bool) {
	if s.cfg.Listener == nil {
		return 0, peerID, false
	}
	s.mu.Lock()
	audited := s.swarms[ih] != nil
	s.mu.Unlock()
	tcp, isTCP := s.cfg.Listener.Addr().(*net.TCPAddr)
	if !audited || !isTCP {
		return 0, peerID, false
	}
	return uint16(tcp.Port), s.cfg.Collect.PeerID, true
}
