// Package swarmsim runs simulated BitTorrent peers in one process, on
// loopback, speaking the real wire protocol through internal/peerwire
// (plaintext and MSE, per-peer policy), with per-peer upload rate limits
// and scripted misbehaviour. The demo, the benchmarks and the tests use it
// as a swarm whose truth is known.
//
// A Peer on its own (StartPeer) serves the pieces it has. With
// PeerConfig.Download it also fetches the pieces it lacks from the peers it
// is connected to, verifies them by SHA-1, bans peers that send bad data and
// announces HAVEs, so bitfields grow as in a real swarm. A Swarm (StartSwarm)
// runs many such peers that find each other through a tracker, announcing
// their true counters or lying about them as told, and records the truth.
package swarmsim

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"
	"golang.org/x/time/rate"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// Encryption is a simulated peer's policy for incoming connections.
type Encryption string

// The policies, named as clients name them.
const (
	EncRequired  Encryption = "required"  // MSE with RC4 only
	EncPreferred Encryption = "preferred" // plaintext and MSE both accepted
	EncDisabled  Encryption = "disabled"  // plaintext only; MSE is hung up on
)

// dialPolicy is the policy a peer uses for the connections it opens.
func (e Encryption) dialPolicy() peerwire.Policy {
	switch e {
	case EncRequired:
		return peerwire.PolicyRequire
	case EncDisabled:
		return peerwire.PolicyPlaintext
	}
	return peerwire.PolicyAuto
}

// Payload is the content of the simulated torrent.
type Payload struct {
	InfoHash    infohash.T
	PieceLength int64
	Data        []byte

	hashOnce sync.Once
	hashes   [][20]byte
}

// NumPieces is the number of pieces of the payload.
func (p *Payload) NumPieces() int {
	return int((int64(len(p.Data)) + p.PieceLength - 1) / p.PieceLength)
}

// PieceSize is the length of piece i.
func (p *Payload) PieceSize(i int) int64 {
	return min(p.PieceLength, int64(len(p.Data))-int64(i)*p.PieceLength)
}

// PieceHash is the SHA-1 of piece i (computed once for all pieces, on first
// use), the hash a downloading peer checks what it receives against.
func (p *Payload) PieceHash(i int) [20]byte {
	p.hashOnce.Do(func() {
		p.hashes = make([][20]byte, p.NumPieces())
		for j := range p.hashes {
			off := int64(j) * p.PieceLength
			p.hashes[j] = sha1.Sum(p.Data[off : off+p.PieceSize(j)])
		}
	})
	if i < 0 || i >= len(p.hashes) {
		return [20]byte{}
	}
	return p.hashes[i]
}

// Defaults for the zero values of PeerConfig.
const (
	DefaultMaxConns      = 30
	DefaultRequestQueue  = 16
	DefaultChokeInterval = 10 * time.Second
	// BlockSize is the request size downloading peers use.
	BlockSize = 16 << 10
)

// Internal bounds.
const (
	maxDials        = 4    // concurrent outgoing handshakes per peer
	maxUploadQueue  = 500  // requests queued from one connection (our reqq)
	maxOutbox       = 4096 // control messages queued for one connection
	handshakeTime   = 10 * time.Second
	readIdleTimeout = 2 * time.Minute
	keepaliveEvery  = time.Minute
	tickEvery       = 250 * time.Millisecond
	pruneIdle       = 10 * time.Second
)

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

	// Download makes the peer fetch the pieces it lacks: from the peers
	// that connect to it and from the addresses given to AddPeers, which it
	// dials with the outgoing policy matching Encryption (required: RC4
	// only; preferred: MSE with plaintext fallback; disabled: plaintext).
	// Without it the peer only serves, as a static seed or snapshot does.
	Download bool
	// DownloadRate caps what the peer receives, in payload bytes per second
	// over all its connections; 0 means unlimited.
	DownloadRate float64
	// UploadSlots bounds how many interested peers are unchoked at once;
	// one slot is rotated to a waiting peer every ChokeInterval. 0 unchokes
	// every interested peer at once.
	UploadSlots   int
	ChokeInterval time.Duration
	// MaxConns bounds the peer's live connections, incoming and outgoing
	// together (DefaultMaxConns when 0); further incoming ones are closed
	// at once.
	MaxConns int
	// OneConnPerIP closes an incoming connection, after its handshake,
	// from an IP that already has one, as Transmission, qBittorrent and
	// aria2 do by default.
	OneConnPerIP bool
	// DropUninterested closes a connection on which neither side has been
	// interested for this long, as aria2 does after 30 s; 0 never does.
	DropUninterested time.Duration
	// RequestQueue is the number of block requests a downloading peer keeps
	// outstanding on each connection (DefaultRequestQueue when 0).
	RequestQueue int
	// Seed drives the peer's random choices: ties in rarest-first piece
	// choice, dial order and which waiting peer gets a rotated slot.
	Seed uint64
	// KeepData keeps the bytes of every downloaded piece that passed its
	// hash check, for Data (tests compare them to the payload).
	KeepData bool
	// Unconnectable makes the peer listen nowhere: Addr is then a port held
	// by a bound socket that does not listen, so connections to it are
	// refused, as for a peer behind NAT. It still dials out.
	Unconnectable bool
}

// Peer is a running simulated peer.
type Peer struct {
	cfg        PeerConfig
	ln         net.Listener // nil when unconnectable
	hold       io.Closer    // the bound, non-listening socket when unconnectable
	addr       netip.AddrPort
	limiter    *rate.Limiter
	dlimiter   *rate.Limiter
	uploaded   atomic.Int64
	downloaded atomic.Int64
	wasted     atomic.Int64
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup // accept loop and housekeeping
	connWG     sync.WaitGroup // connection and dial goroutines
	wake       chan struct{}  // nudges housekeeping (new addresses)
	complete   chan struct{}  // closed when the peer has every piece
	maxConns   int
	queue      int

	mu        sync.Mutex
	closed    bool
	have      bitfield.Bitfield
	conns     map[*peerwire.Conn]*conn
	peerExt   map[*peerwire.Conn]peerwire.ExtHandshake
	pending   int // accepted or dialled connections not yet registered
	dialing   int
	connSeq   uint64
	unchoked  int
	rng       *rand.Rand
	dl        *downloader // nil without Download
	book      addrBook
	lastChoke time.Time
	lastAlive time.Time
	doneAt    time.Time
}

// StartPeer listens on addr (e.g. "127.0.0.1:0") and serves until Close.
// With cfg.Unconnectable it binds addr without listening.
func StartPeer(addr string, cfg PeerConfig) (*Peer, error) {
	if cfg.Payload == nil {
		return nil, errors.New("swarmsim: peer needs a payload")
	}
	if cfg.Payload.PieceLength <= 0 || len(cfg.Payload.Data) == 0 {
		return nil, fmt.Errorf("swarmsim: payload of %d bytes with piece length %d", len(cfg.Payload.Data), cfg.Payload.PieceLength)
	}
	n := cfg.Payload.NumPieces()
	if cfg.Have.Len() != n {
		cfg.Have = bitfield.New(n)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ChokeInterval <= 0 {
		cfg.ChokeInterval = DefaultChokeInterval
	}
	p := &Peer{
		cfg:      cfg,
		have:     cfg.Have.Clone(),
		conns:    map[*peerwire.Conn]*conn{},
		peerExt:  map[*peerwire.Conn]peerwire.ExtHandshake{},
		wake:     make(chan struct{}, 1),
		complete: make(chan struct{}),
		maxConns: cfg.MaxConns,
		queue:    cfg.RequestQueue,
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5851f42d4c957f2d)),
	}
	if p.maxConns <= 0 {
		p.maxConns = DefaultMaxConns
	}
	if p.queue <= 0 {
		p.queue = DefaultRequestQueue
	}
	if p.have.Complete() {
		close(p.complete)
	}
	if cfg.Unconnectable {
		h, ap, err := holdPort(addr)
		if err != nil {
			return nil, fmt.Errorf("swarmsim bind %s: %w", addr, err)
		}
		p.hold, p.addr = h, ap
	} else {
		ln, err := peerwire.Listen(addr)
		if err != nil {
			return nil, fmt.Errorf("swarmsim listen %s: %w", addr, err)
		}
		p.ln = ln
		p.addr = netip.MustParseAddrPort(ln.Addr().String())
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if cfg.UploadRate > 0 {
		// Burst of two blocks: enough to keep a connection busy, small
		// enough that the cap holds over any window of a second or more.
		p.limiter = rate.NewLimiter(rate.Limit(cfg.UploadRate), 2*limiterChunk)
	}
	if cfg.DownloadRate > 0 {
		p.dlimiter = rate.NewLimiter(rate.Limit(cfg.DownloadRate), 2*limiterChunk)
	}
	if cfg.Download {
		p.dl = newDownloader(p)
	}
	if p.ln != nil {
		p.wg.Add(1)
		go p.acceptLoop()
	}
	if cfg.Download || cfg.UploadSlots > 0 || cfg.DropUninterested > 0 {
		p.wg.Add(1)
		go p.housekeeping()
	}
	return p, nil
}

// limiterChunk is the unit in which uploads take tokens from the limiter.
const limiterChunk = 16 << 10

// Addr is the peer's listening address (for an unconnectable peer, the
// address it announces, where nothing listens).
func (p *Peer) Addr() netip.AddrPort { return p.addr }

// PeerID is the peer's id.
func (p *Peer) PeerID() [20]byte { return p.cfg.PeerID }

// Uploaded is the payload bytes the peer has sent (the ground truth).
func (p *Peer) Uploaded() int64 { return p.uploaded.Load() }

// Downloaded is the payload bytes the peer has received in piece messages,
// including blocks it did not need and blocks of pieces that failed their
// hash check (the ground truth of what a client reports as downloaded).
func (p *Peer) Downloaded() int64 { return p.downloaded.Load() }

// Left is the number of bytes of the pieces the peer does not have.
func (p *Peer) Left() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leftLocked()
}

func (p *Peer) leftLocked() int64 {
	var left int64
	for i := range p.have.Len() {
		if !p.have.Has(i) {
			left += p.cfg.Payload.PieceSize(i)
		}
	}
	return left
}

// Have returns a copy of the set of pieces the peer holds.
func (p *Peer) Have() bitfield.Bitfield {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.have.Clone()
}

// Complete is closed once the peer holds every piece.
func (p *Peer) Complete() <-chan struct{} { return p.complete }

// Close stops the peer and waits for its connections to end.
func (p *Peer) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	var err error
	if p.ln != nil {
		err = p.ln.Close()
	}
	if p.hold != nil {
		err = p.hold.Close()
	}
	p.wg.Wait()
	p.connWG.Wait()
	return err
}

// admit reserves room for one more connection (counted as pending until it
// is registered or fails); it refuses when the peer is full or closed.
func (p *Peer) admit() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns)+p.pending >= p.maxConns {
		return false
	}
	p.pending++
	p.connWG.Add(1)
	return true
}

func (p *Peer) acceptLoop() {
	defer p.wg.Done()
	for {
		raw, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: wait a little, bounded by Close.
			p.cfg.Logger.Debug("swarmsim accept", "err", err)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !p.admit() {
			raw.Close()
			continue
		}
		go func() {
			defer p.connWG.Done()
			p.serve(raw)
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

// serve handshakes one incoming connection and runs it.
func (p *Peer) serve(raw net.Conn) {
	hctx, cancel := context.WithTimeout(p.ctx, handshakeTime)
	c, err := peerwire.Accept(hctx, raw, p.acceptConfig())
	cancel()
	if err != nil {
		p.unpend()
		p.cfg.Logger.Debug("swarmsim accept", "err", err)
		return
	}
	p.run(c, false, netip.AddrPort{})
}

func (p *Peer) unpend() {
	p.mu.Lock()
	p.pending--
	p.mu.Unlock()
}

// Gain adds piece i to the peer's set and sends HAVE on every connection,
// as a peer that just finished downloading it does.
func (p *Peer) Gain(i int) {
	p.mu.Lock()
	p.gainLocked(i)
	p.mu.Unlock()
}

// gainLocked sets piece i and tells every connection; for a downloading
// peer it also drops interest where nothing is left to fetch and marks
// completion.
func (p *Peer) gainLocked(i int) {
	if !p.have.Set(i) {
		return
	}
	for _, k := range p.conns {
		k.enqueue(pp.Message{Type: pp.Have, Index: pp.Integer(i)})
	}
	if p.dl != nil {
		p.dl.gained(i)
	}
	if p.have.Complete() {
		select {
		case <-p.complete:
		default:
			p.doneAt = time.Now()
			close(p.complete)
			if p.dl != nil {
				p.dl.completed()
			}
		}
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
