package probe

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerid"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// Target is the torrent a probe asks about.
type Target struct {
	InfoHash  infohash.T
	NumPieces int
	// PieceSize gives each piece's length (the last one may be shorter).
	PieceSize func(i int) int64
	// Verify checks a complete piece against its SHA-1 from the metainfo.
	Verify func(i int, data []byte) bool
	// Private: the torrent is private (BEP 27): the handshake advertises
	// no DHT and the extension handshake no PEX.
	Private bool
}

// Options tune one probe. Zero values take the defaults noted.
type Options struct {
	PeerID [20]byte
	Policy peerwire.Policy // default auto
	// MaxBytes is how much payload to request (default 2 MiB; 0 after
	// defaults are applied means "bitfield only" only when BitfieldOnly).
	MaxBytes     int64
	BitfieldOnly bool
	// Timeout bounds the whole probe (default 30 s).
	Timeout time.Duration
	// InitialWait bounds how long we wait for the peer's bitfield and
	// extension handshake after the BitTorrent handshake (default 5 s).
	InitialWait time.Duration
	// ClientName is sent in our extension handshake.
	ClientName string
	// Rand picks which pieces to request; nil uses a random source.
	Rand *rand.Rand
	// ClientNameFromID names the peer's client from its peer_id when its
	// extension handshake has no "v".
	ClientNameFromID func([20]byte) string
	Dialer           peerwire.Config
	// Keep leaves the connection open after a probe that ended cleanly
	// (no request left unanswered) and returns it in Result.Conn, not
	// interested any more, for the caller to own: a watch that follows a
	// probe then needs no second connection, which peers that take one
	// connection per IP would refuse while they still count the first.
	Keep bool
}

const blockSize = 16 << 10

func (o *Options) defaults() {
	if o.Policy == "" {
		o.Policy = peerwire.PolicyAuto
	}
	if o.MaxBytes <= 0 && !o.BitfieldOnly {
		o.MaxBytes = 2 << 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.InitialWait <= 0 {
		o.InitialWait = 5 * time.Second
	}
	if o.ClientName == "" {
		o.ClientName = peerid.OurName
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if o.PeerID == ([20]byte{}) {
		// Real clients drop connections whose peer_id looks like a
		// duplicate; a fresh random id per probe avoids that.
		o.PeerID = peerid.New(peerid.Prefix)
	}
}

// Run probes the peer at addr. It always returns a Result whose Outcome says
// how far it got; the error is non-nil only when the probe could not be
// attempted at all (bad arguments).
func Run(ctx context.Context, addr netip.AddrPort, t Target, o Options) (*Result, error) {
	if t.NumPieces <= 0 || t.PieceSize == nil || t.Verify == nil {
		return nil, errors.New("probe: target needs pieces, sizes and hashes")
	}
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r := &Result{Peer: addr.String(), PiecesTotal: t.NumPieces, Started: time.Now(), BitfieldKind: "none"}
	s := &session{t: t, o: o, r: r, start: r.Started}
	err := s.run(ctx, addr)
	r.DurationMS = ms(time.Since(s.start))
	if s.conn != nil {
		r.WireBytesIn, r.WireBytesOut = s.conn.Bytes()
		if o.Keep && err == nil && s.handOver() {
			r.Conn, r.State = s.conn, s.state()
		} else {
			s.conn.Close()
		}
	}
	s.finish(err)
	return r, nil
}

// RunOn probes the peer over a connection another owner lends (a watch's:
// see watch.Lender), within o.Timeout: no handshake, and no piece set to
// wait for, since st holds what the peer said before; st is updated with
// what it says during the probe. The probe records no snapshot
// (Result.SnapshotBitfield stays nil: the lender recorded the piece set)
// and counts only its own bytes. It returns the connection not
// interested, with nothing requested (blocks still outstanding are
// cancelled, BEP 3); the error is non-nil when that could not be done, and
// the connection is then of no further use.
func RunOn(ctx context.Context, conn *peerwire.Conn, st *peerwire.PeerState, t Target, o Options) (*Result, error) {
	if t.NumPieces <= 0 || t.PieceSize == nil || t.Verify == nil {
		return nil, errors.New("probe: target needs pieces, sizes and hashes")
	}
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r := &Result{Peer: conn.Remote.String(), PiecesTotal: t.NumPieces, Started: time.Now(), BitfieldKind: "watch", TCPConnected: true, OnWatch: true}
	s := &session{t: t, o: o, r: r, start: r.Started, conn: conn}
	s.describe()
	r.HandshakeMS = 0 // no handshake: the connection was open
	s.have, s.haveKnown = bitfield.New(t.NumPieces), st.Have.Len() == t.NumPieces
	if s.haveKnown {
		s.have = st.Have.Clone()
	}
	s.choked, s.reqq, s.extDone = st.Choked, st.Reqq, true
	s.allowedFast = map[int]bool{}
	for _, i := range st.AllowedFast {
		s.allowedFast[i] = true
	}
	in0, out0 := conn.Bytes()
	stop := peerwire.Interrupt(ctx, conn)
	deadline, _ := ctx.Deadline()
	var err error
	if s.have.Count() > 0 && !o.BitfieldOnly {
		err = s.download(deadline)
	}
	stop()
	r.DurationMS = ms(time.Since(s.start))
	released := s.release()
	in1, out1 := conn.Bytes()
	r.WireBytesIn, r.WireBytesOut = in1-in0, out1-out0
	*st = *s.state()
	s.finish(err)
	return r, released
}

// state is what the peer told the session, for the connection's next owner.
func (s *session) state() *peerwire.PeerState {
	st := &peerwire.PeerState{Choked: s.choked, Reqq: s.reqq}
	if s.haveKnown {
		st.Have = s.have
	}
	for i := range s.allowedFast {
		st.AllowedFast = append(st.AllowedFast, i)
	}
	return st
}

// release readies the connection for its next owner: every outstanding
// request cancelled, not interested, no deadline.
func (s *session) release() error {
	defer s.conn.SetDeadline(time.Time{})
	var msgs []pp.Message
	for b := range s.pending {
		msgs = append(msgs, pp.Message{Type: pp.Cancel, Index: pp.Integer(b.piece), Begin: pp.Integer(b.begin), Length: pp.Integer(b.length)})
	}
	if s.interested {
		msgs = append(msgs, pp.Message{Type: pp.NotInterested})
	}
	if len(msgs) == 0 {
		return nil
	}
	s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := s.conn.WriteMessages(msgs...); err != nil {
		return fmt.Errorf("probe: give the connection back: %w", err)
	}
	return nil
}

// handOver readies the connection for its next owner: nothing requested
// and not interested. It reports false when the connection cannot be
// handed over.
func (s *session) handOver() bool {
	return len(s.pending) == 0 && s.haveKnown && s.release() == nil
}

// session is the state of one probe; it is owned by one goroutine.
type session struct {
	t     Target
	o     Options
	r     *Result
	start time.Time
	conn  *peerwire.Conn

	have        bitfield.Bitfield
	haveKnown   bool
	extDone     bool
	reqq        int // the peer's request queue (BEP 10), 0 if unknown
	choked      bool
	interested  bool
	allowedFast map[int]bool
	// requested blocks not yet received, and all blocks ever requested.
	pending  map[block]time.Time
	asked    map[block]bool
	queue    []block
	pieces   map[int]*pieceBuf
	arrivals []arrival
	firstReq time.Time
}

type block struct {
	piece  int
	begin  int64
	length int64
}

type arrival struct {
	at time.Time
	n  int64
	// choked: the block came while the peer choked us (an allowed-fast
	// piece, BEP 6), served at the peer's discretion outside its unchoke
	// slots: no measure of its upload capacity.
	choked bool
}

type pieceBuf struct {
	data     []byte
	missing  int // blocks not yet received
	received map[int64]bool
}

func (s *session) run(ctx context.Context, addr netip.AddrPort) error {
	cfg := s.o.Dialer
	cfg.InfoHash, cfg.PeerID, cfg.Policy = s.t.InfoHash, s.o.PeerID, s.o.Policy
	cfg.Private = cfg.Private || s.t.Private
	conn, err := peerwire.Dial(ctx, addr, cfg)
	s.r.TCPConnected = err == nil || errors.Is(err, peerwire.ErrConnected)
	if err != nil {
		return err
	}
	s.conn = conn
	// ctx cancellation (not just its deadline) must unblock reads too.
	stop := peerwire.Interrupt(ctx, conn)
	defer stop()
	return s.talk(ctx)
}

// talk runs the conversation on an established connection.
func (s *session) talk(ctx context.Context) error {
	conn := s.conn
	s.describe()
	s.have = bitfield.New(s.t.NumPieces)
	s.choked = true
	s.allowedFast = map[int]bool{}
	deadline, _ := ctx.Deadline()

	var hello []pp.Message
	if s.r.Extended {
		hello = append(hello, peerwire.OurExtHandshake(s.o.ClientName, 250, 0, s.t.Private))
	} else {
		s.extDone = true
	}
	if s.r.Fast {
		hello = append(hello, pp.Message{Type: pp.HaveNone})
	}
	if len(hello) > 0 {
		conn.SetDeadline(deadline)
		if err := conn.WriteMessages(hello...); err != nil {
			return fmt.Errorf("send hello: %w", err)
		}
	}

	// Phase 1: the peer's bitfield (or HaveAll/HaveNone) and extension
	// handshake. A peer with no pieces may send no bitfield at all.
	initialEnd := minTime(time.Now().Add(s.o.InitialWait), deadline)
	for !(s.haveKnown && s.extDone) {
		if err := s.step(initialEnd); err != nil {
			if errors.Is(err, peerwire.ErrTimeout) && time.Now().Before(deadline) {
				break
			}
			return err
		}
	}
	if s.o.BitfieldOnly || s.have.Count() == 0 {
		return nil
	}

	return s.download(deadline)
}

// describe fills what the handshake told about the peer.
func (s *session) describe() {
	conn := s.conn
	s.r.HandshakeMS = ms(conn.HandshakeDuration)
	s.r.Encryption = string(conn.Method)
	s.r.Transport = string(conn.Transport)
	s.r.PeerID = printablePeerID(conn.PeerID)
	s.r.PeerIDHex = hex.EncodeToString(conn.PeerID[:])
	s.r.Fast = conn.SupportsFast()
	s.r.Extended = conn.SupportsExtended()
	if s.o.ClientNameFromID != nil {
		s.r.Client = s.o.ClientNameFromID(conn.PeerID)
	}
}

// download asks for data (phases 2 and 3) until deadline.
func (s *session) download(deadline time.Time) error {
	conn := s.conn
	// Phase 2: ask for data, wait for unchoke or allowed-fast pieces.
	conn.SetDeadline(deadline)
	if err := conn.WriteMessages(pp.Message{Type: pp.Interested}); err != nil {
		return fmt.Errorf("send interested: %w", err)
	}
	s.interested = true
	s.pending = map[block]time.Time{}
	s.asked = map[block]bool{}
	s.pieces = map[int]*pieceBuf{}
	for s.choked && len(s.requestable()) == 0 {
		if err := s.step(deadline); err != nil {
			if errors.Is(err, peerwire.ErrTimeout) {
				return errChokedThroughout
			}
			return err
		}
	}
	s.plan()

	// Phase 3: keep the pipeline full until every planned block is in.
	depth := 64
	if s.reqq > 0 {
		depth = min(max(s.reqq, 4), 256)
	}
	for len(s.queue) > 0 || len(s.pending) > 0 {
		if err := s.fill(depth); err != nil {
			return err
		}
		if err := s.step(deadline); err != nil {
			if errors.Is(err, peerwire.ErrTimeout) && s.r.BytesDownloaded > 0 {
				return nil // measured what arrived before the deadline
			}
			if errors.Is(err, peerwire.ErrTimeout) && s.choked {
				return errChokedThroughout
			}
			return err
		}
	}
	return nil
}

var errChokedThroughout = errors.New("peer kept us choked")

// step reads and handles one message, waiting until end at most.
func (s *session) step(end time.Time) error {
	s.conn.SetDeadline(end)
	m, err := s.conn.ReadMessage()
	if err != nil {
		return err
	}
	return s.handle(m)
}

func (s *session) handle(m peerwire.Message) error {
	now := time.Now()
	switch {
	case m.Keepalive:
		s.r.Keepalives++
		return nil
	case m.Unknown:
		s.r.UnknownMessages++
		return nil
	}
	switch m.Type {
	case pp.Bitfield:
		bf, err := bitfield.FromBools(m.Bitfield, s.t.NumPieces)
		if err != nil {
			return protoErr("bitfield: %v", err)
		}
		if s.pieceSetGiven() {
			return s.laterPieceSet(bf, now, "bitfield")
		}
		s.snapshot(bf, now)
		bf.Union(s.have) // HAVEs that came first still count
		s.have, s.haveKnown, s.r.BitfieldKind = bf, true, "bitfield"
	case pp.HaveAll:
		if s.pieceSetGiven() {
			return s.laterPieceSet(bitfield.Full(s.t.NumPieces), now, "HaveAll")
		}
		s.snapshot(bitfield.Full(s.t.NumPieces), now)
		s.have, s.haveKnown, s.r.BitfieldKind = bitfield.Full(s.t.NumPieces), true, "have_all"
	case pp.HaveNone:
		if s.pieceSetGiven() {
			return s.laterPieceSet(bitfield.New(s.t.NumPieces), now, "HaveNone")
		}
		s.snapshot(bitfield.New(s.t.NumPieces), now)
		s.haveKnown, s.r.BitfieldKind = true, "have_none"
	case pp.Have:
		i := int(m.Index)
		if !s.have.Set(i) {
			return protoErr("have for piece %d of %d", i, s.t.NumPieces)
		}
		if !s.haveKnown {
			s.haveKnown, s.r.BitfieldKind = true, "haves_only"
		}
		s.noteHave(i, now)
	case pp.Choke:
		s.choked = true
		if !s.r.Fast {
			// Without the Fast extension a choke silently drops our
			// requests; ask again after the next unchoke.
			for b := range s.pending {
				if !s.allowedFast[b.piece] {
					delete(s.pending, b)
					s.queue = append([]block{b}, s.queue...)
				}
			}
		}
	case pp.Unchoke:
		s.choked = false
		if s.r.UnchokeMS == 0 {
			s.r.UnchokeMS = ms(now.Sub(s.start))
		}
	case pp.AllowedFast:
		if i := int(m.Index); i >= 0 && i < s.t.NumPieces {
			s.allowedFast[i] = true
			s.r.AllowedFast = len(s.allowedFast)
		}
	case pp.Reject:
		b := block{int(m.Index), int64(m.Begin), int64(m.Length)}
		if _, ok := s.pending[b]; !ok {
			return protoErr("reject for a block we did not request (%d/%d)", b.piece, b.begin)
		}
		delete(s.pending, b)
		s.r.Rejected++
		if s.r.Rejected > 4*len(s.asked)+16 {
			return protoErr("peer rejects everything")
		}
		s.queue = append(s.queue, b)
	case pp.Piece:
		return s.onPiece(m, now)
	case pp.Extended:
		if m.ExtendedID == pp.HandshakeExtendedID && !s.extDone {
			h, err := peerwire.ParseExtHandshake(m.ExtendedPayload)
			if err != nil {
				return protoErr("%v", err)
			}
			s.r.ExtHandshake = &h
			s.reqq = h.Reqq
			if h.Client != "" {
				s.r.Client = h.Client
			}
			s.extDone = true
		}
	}
	return nil
}

// pieceSetGiven reports whether a bitfield, HaveAll or HaveNone came
// already.
func (s *session) pieceSetGiven() bool { return s.haveKnown && s.r.BitfieldKind != "haves_only" }

// laterPieceSet handles a bitfield, HaveAll or HaveNone after the first.
// BEP 3 allows one only as the first message, but aria2 sends a whole
// bitfield (or HaveAll once complete) instead of HAVEs when it gained 20 or
// more pieces since it last sent any: an update, recorded as one HAVE per
// new piece. A set that drops pieces the peer said it had is a protocol
// error.
func (s *session) laterPieceSet(bf bitfield.Bitfield, now time.Time, what string) error {
	if dropped := s.have.Gained(bf); len(dropped) > 0 {
		return protoErr("%s after the piece set drops %d pieces it had", what, len(dropped))
	}
	for _, i := range bf.Gained(s.have) {
		s.have.Set(i)
		s.noteHave(i, now)
	}
	return nil
}

// noteHave records that the peer announced piece i (the first 100,000).
func (s *session) noteHave(i int, now time.Time) {
	if len(s.r.Haves) < 100000 {
		s.r.Haves = append(s.r.Haves, HaveEvent{Piece: i, AtMS: ms(now.Sub(s.start))})
	}
}

// snapshot keeps the piece set exactly as the peer's bitfield (or
// HaveAll/HaveNone) message stated it, and when: HAVEs before or after it
// are separate evidence.
func (s *session) snapshot(bf bitfield.Bitfield, at time.Time) {
	s.r.SnapshotBitfield = bf.Bytes()
	s.r.SnapshotAtMS = ms(at.Sub(s.start))
}

func (s *session) onPiece(m peerwire.Message, now time.Time) error {
	b := block{int(m.Index), int64(m.Begin), int64(len(m.Piece))}
	if !s.asked[b] {
		return protoErr("piece %d offset %d length %d was never requested", b.piece, b.begin, b.length)
	}
	pb := s.pieces[b.piece]
	if pb.received[b.begin] {
		return nil // duplicate after a re-request: already counted
	}
	delete(s.pending, b)
	pb.received[b.begin] = true
	copy(pb.data[b.begin:], m.Piece)
	pb.missing--
	s.arrivals = append(s.arrivals, arrival{at: now, n: b.length, choked: s.choked})
	s.r.BytesDownloaded += b.length
	if s.r.TTFBMS == 0 {
		s.r.TTFBMS = ms(now.Sub(s.firstReq))
	}
	if pb.missing == 0 && int64(len(pb.data)) == s.t.PieceSize(b.piece) {
		if s.t.Verify(b.piece, pb.data) {
			s.r.PiecesVerified++
		} else {
			s.r.PiecesFailed++
			s.r.FailedPieces = append(s.r.FailedPieces, b.piece)
		}
		pb.data = nil
	}
	return nil
}

// requestable lists pieces we may ask for now.
func (s *session) requestable() []int {
	var out []int
	for _, i := range s.have.Indices() {
		if !s.choked || s.allowedFast[i] {
			out = append(out, i)
		}
	}
	return out
}

// plan picks whole pieces at random among those the peer has (allowed-fast
// ones first while choked) until MaxBytes is covered. A piece larger than the
// budget is requested in part: it measures bandwidth but cannot be verified.
func (s *session) plan() {
	shuffle := func(v []int) { s.o.Rand.Shuffle(len(v), func(i, j int) { v[i], v[j] = v[j], v[i] }) }
	cands := s.requestable() // every piece it has, or only allowed-fast ones while choked
	shuffle(cands)
	if s.choked {
		// The rest come after a later unchoke.
		var rest []int
		for _, i := range s.have.Indices() {
			if !s.allowedFast[i] {
				rest = append(rest, i)
			}
		}
		shuffle(rest)
		cands = append(cands, rest...)
	}
	budget := s.o.MaxBytes
	for _, p := range cands {
		if budget <= 0 {
			break
		}
		size := s.t.PieceSize(p)
		take := min(size, budget)
		budget -= take
		n := 0
		for off := int64(0); off < take; off += blockSize {
			s.queue = append(s.queue, block{p, off, min(blockSize, size-off)})
			n++
		}
		s.pieces[p] = &pieceBuf{data: make([]byte, take), missing: n, received: map[int64]bool{}}
	}
}

// fill sends requests until depth are outstanding, for blocks we may ask for.
func (s *session) fill(depth int) error {
	var msgs []pp.Message
	var keep []block
	for _, b := range s.queue {
		if len(s.pending)+len(msgs) >= depth || (s.choked && !s.allowedFast[b.piece]) {
			keep = append(keep, b)
			continue
		}
		msgs = append(msgs, pp.Message{Type: pp.Request, Index: pp.Integer(b.piece), Begin: pp.Integer(b.begin), Length: pp.Integer(b.length)})
	}
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	if s.firstReq.IsZero() {
		s.firstReq = now
	}
	for _, m := range msgs {
		b := block{int(m.Index), int64(m.Begin), int64(m.Length)}
		s.pending[b] = now
		s.asked[b] = true
	}
	s.queue = keep
	return s.conn.WriteMessages(msgs...)
}

// finish fills the outcome, the bitfield summary and the throughput.
func (s *session) finish(err error) {
	r := s.r
	if s.haveKnown || s.have.Len() > 0 {
		r.PiecesHave = s.have.Count()
		r.Seeder = r.PiecesHave == r.PiecesTotal
		r.Bitfield = s.have.Bytes()
	}
	r.Choked = s.choked
	r.ThroughputBytesPerSec, r.ThroughputSpread, r.ThroughputSamples = throughput(s.arrivals)
	switch {
	case errors.Is(err, errChokedThroughout):
		r.Outcome = OutcomeChoked
		r.Error = err.Error()
	case err != nil:
		r.Outcome = outcomeFor(err)
		r.Error = err.Error()
	case r.PiecesFailed > 0:
		r.Outcome = OutcomeBadData
		r.Error = fmt.Sprintf("%d of %d pieces failed their SHA-1 check", r.PiecesFailed, r.PiecesFailed+r.PiecesVerified)
	default:
		r.Outcome = OutcomeOK
	}
	if r.PiecesFailed > 0 && r.Outcome != OutcomeBadData && r.Outcome != OutcomeProtocolError {
		// Fake data outranks a later timeout or choke: it is the evidence.
		r.Outcome = OutcomeBadData
	}
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", peerwire.ErrProtocol, fmt.Sprintf(format, args...))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func minTime(a, b time.Time) time.Time {
	if b.IsZero() || a.Before(b) {
		return a
	}
	return b
}

// printablePeerID renders a peer_id with non-printable bytes %-escaped, as
// trackers show them.
func printablePeerID(id [20]byte) string {
	var sb strings.Builder
	for _, c := range id {
		if c >= 0x20 && c < 0x7f && c != '%' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}
