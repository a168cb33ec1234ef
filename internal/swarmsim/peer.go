// Package swarmsim runs simulated BitTorrent peers in one process, on
// loopback, speaking the real wire protocol through internal/peerwire
// (plaintext and MSE, per-peer policy), with per-peer upload rate limits
// and scripted misbehaviour. The demo, the benchmarks and the tests use it
// as a swarm whose truth is known.
package swarmsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"
	"golang.org/x/time/rate"

	"github.com/swarmaudit/swarmaudit/internal/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/peerwire"
)

// Encryption is a simulated peer's policy for incoming connections.
type Encryption string

// The policies, named as clients name them.
const (
	EncRequired  Encryption = "required"  // MSE with RC4 only
	EncPreferred Encryption = "preferred" // plaintext and MSE both accepted
	EncDisabled  Encryption = "disabled"  // plaintext only; MSE is hung up on
)

// Payload is the content of the simulated torrent.
type Payload struct {
	InfoHash    infohash.T
	PieceLength int64
	Data        []byte
}

// NumPieces is the number of pieces of the payload.
func (p *Payload) NumPieces() int {
	return int((int64(len(p.Data)) + p.PieceLength - 1) / p.PieceLength)
}

// PieceSize is the length of piece i.
func (p *Payload) PieceSize(i int) int64 {
	return min(p.PieceLength, int64(len(p.Data))-int64(i)*p.PieceLength)
}

// PeerConfig configures one simulated peer.
type PeerConfig struct {
	Payload    *Payload
	PeerID     [20]byte
	Have       bitfield.Bitfield // pieces it starts with
	Encryption Encryption
	// UploadRate caps what the peer sends, in payload bytes per second over
	// all its connections; 0 means unlimited.
	UploadRate float64
	// BadData makes the peer flip bytes in every block it serves.
	BadData bool
	// NeverUnchoke keeps every requester choked.
	NeverUnchoke bool
	ClientName   string
	// InfoBytes, when set, is served to ut_metadata requests (BEP 9).
	InfoBytes []byte
	// PEX lists addresses sent in a ut_pex message to peers that support it.
	PEX    []netip.AddrPort
	Logger *slog.Logger
}

// limiterChunk is the unit in which uploads take tokens from the limiter.
const limiterChunk = 16 << 10

// Peer is a running simulated peer.
type Peer struct {
	cfg      PeerConfig
	ln       net.Listener
	limiter  *rate.Limiter
	uploaded atomic.Int64
	mu       sync.Mutex
	have     bitfield.Bitfield
	conns    map[*peerwire.Conn]bool
	peerExt  map[*peerwire.Conn]peerwire.ExtHandshake
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// StartPeer listens on addr (e.g. "127.0.0.1:0") and serves until Close.
func StartPeer(addr string, cfg PeerConfig) (*Peer, error) {
	if cfg.Payload == nil {
		return nil, errors.New("swarmsim: peer needs a payload")
	}
	if cfg.Have.Len() != cfg.Payload.NumPieces() {
		cfg.Have = bitfield.New(cfg.Payload.NumPieces())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("swarmsim listen %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Peer{cfg: cfg, ln: ln, have: cfg.Have.Clone(), cancel: cancel, conns: map[*peerwire.Conn]bool{}, peerExt: map[*peerwire.Conn]peerwire.ExtHandshake{}}
	if cfg.UploadRate > 0 {
		// Burst of two blocks: enough to keep a connection busy, small
		// enough that the cap holds over any window of a second or more.
		p.limiter = rate.NewLimiter(rate.Limit(cfg.UploadRate), 2*limiterChunk)
	}
	p.wg.Add(1)
	go p.acceptLoop(ctx)
	return p, nil
}

// Addr is the peer's listening address.
func (p *Peer) Addr() netip.AddrPort { return netip.MustParseAddrPort(p.ln.Addr().String()) }

// Uploaded is the payload bytes the peer has sent (the ground truth).
func (p *Peer) Uploaded() int64 { return p.uploaded.Load() }

// Close stops the peer and waits for its connections to end.
func (p *Peer) Close() error {
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Peer) acceptLoop(ctx context.Context) {
	defer p.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		raw, err := p.ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			p.serve(ctx, raw)
		}()
	}
}

func (p *Peer) acceptConfig() peerwire.AcceptConfig {
	ih := p.cfg.Payload.InfoHash
	ac := peerwire.AcceptConfig{
		PeerID:   p.cfg.PeerID,
		Known:    func(h infohash.T) bool { return h == ih },
		InfoHash: func(yield func(infohash.T) bool) { yield(ih) },
	}
	switch p.cfg.Encryption {
	case EncRequired:
	case EncDisabled:
		ac.AllowPlaintext, ac.RefuseMSE = true, true
	default:
		ac.AllowPlaintext, ac.AllowMSEPlaintext = true, true
	}
	return ac
}

// serve runs one incoming connection: the reader handles requests inline,
// and pieces are written from this goroutine under the rate limiter.
func (p *Peer) serve(ctx context.Context, raw net.Conn) {
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := peerwire.Accept(hctx, raw, p.acceptConfig())
	cancel()
	if err != nil {
		p.cfg.Logger.Debug("swarmsim accept", "err", err)
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	p.mu.Lock()
	have := p.have.Clone()
	p.conns[c] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.peerExt, c)
		p.mu.Unlock()
	}()
	var hello []pp.Message
	if c.SupportsExtended() {
		hello = append(hello, peerwire.OurExtHandshake(p.clientName(), 500, len(p.cfg.InfoBytes)))
	}
	switch {
	case c.SupportsFast() && have.Complete():
		hello = append(hello, pp.Message{Type: pp.HaveAll})
	case c.SupportsFast() && have.Count() == 0:
		hello = append(hello, pp.Message{Type: pp.HaveNone})
	case have.Count() > 0:
		hello = append(hello, pp.Message{Type: pp.Bitfield, Bitfield: bools(have)})
	}
	if err := c.WriteMessages(hello...); err != nil {
		return
	}
	choked := true
	for {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		m, err := c.ReadMessage()
		if err != nil {
			return
		}
		switch m.Type {
		case pp.Interested:
			if choked && !p.cfg.NeverUnchoke && !m.Keepalive {
				choked = false
				if c.WriteMessages(pp.Message{Type: pp.Unchoke}) != nil {
					return
				}
			}
		case pp.Request:
			if m.Keepalive || m.Unknown {
				continue
			}
			p.mu.Lock()
			have := p.have.Clone()
			p.mu.Unlock()
			if err := p.answer(ctx, c, m.Message, choked, have); err != nil {
				return
			}
		case pp.Extended:
			if err := p.extended(c, m.Message); err != nil {
				return
			}
		}
	}
}

func (p *Peer) answer(ctx context.Context, c *peerwire.Conn, m pp.Message, choked bool, have bitfield.Bitfield) error {
	i, begin, length := int(m.Index), int64(m.Begin), int64(m.Length)
	ok := !choked && have.Has(i) && length > 0 && length <= 1<<17 && begin >= 0 && begin+length <= p.cfg.Payload.PieceSize(i)
	if !ok {
		if c.SupportsFast() {
			return c.WriteMessages(pp.Message{Type: pp.Reject, Index: m.Index, Begin: m.Begin, Length: m.Length})
		}
		return nil
	}
	for left := int(length); p.limiter != nil && left > 0; left -= limiterChunk {
		if err := p.limiter.WaitN(ctx, min(left, limiterChunk)); err != nil {
			return err
		}
	}
	off := int64(i)*p.cfg.Payload.PieceLength + begin
	data := p.cfg.Payload.Data[off : off+length]
	if p.cfg.BadData {
		data = append([]byte(nil), data...)
		for j := range data {
			data[j] ^= 0x5a
		}
	}
	if err := c.WriteMessages(pp.Message{Type: pp.Piece, Index: m.Index, Begin: m.Begin, Piece: data}); err != nil {
		return err
	}
	p.uploaded.Add(length)
	return nil
}

// Gain adds piece i to the peer's set and sends HAVE on every connection,
// as a peer that just finished downloading it does.
func (p *Peer) Gain(i int) {
	p.mu.Lock()
	if !p.have.Set(i) {
		p.mu.Unlock()
		return
	}
	conns := make([]*peerwire.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.WriteMessages(pp.Message{Type: pp.Have, Index: pp.Integer(i)})
	}
}

func (p *Peer) clientName() string {
	if p.cfg.ClientName != "" {
		return p.cfg.ClientName
	}
	return "swarmsim"
}

func bools(bf bitfield.Bitfield) []bool {
	v := make([]bool, (bf.Len()+7)/8*8)
	for _, i := range bf.Indices() {
		v[i] = true
	}
	return v
}
