package swarmsim

import (
	"crypto/sha1"
	"fmt"
	"net/netip"
	"slices"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
)

// Trust bookkeeping for peers whose data fails hash checks (as libtorrent
// does it): a piece that fails with a single contributor bans it at once;
// a piece with several contributors costs each of them trustFail points,
// a good piece earns each trustPass, and a peer at trustBan or below is
// banned. A peer that only ever sends bad data never earns trust back.
const (
	trustPass = 1
	trustFail = -2
	trustMax  = 20
	trustBan  = -7
)

// Ban is a peer a downloading peer stopped talking to because it sent data
// that failed SHA-1 checks.
type Ban struct {
	PeerID [20]byte
	Addr   netip.AddrPort // its listening address when known, else its connection's
	At     time.Time
	Reason string
}

// blockReq is one block we asked a connection for.
type blockReq struct {
	piece, begin, length int
}

func (b blockReq) msg(t pp.MessageType) pp.Message {
	return pp.Message{Type: t, Index: pp.Integer(b.piece), Begin: pp.Integer(b.begin), Length: pp.Integer(b.length)}
}

// partial is a piece being downloaded.
type partial struct {
	piece int
	size  int
	got   []bool
	nGot  int
	reqBy [][]*conn  // connections with an outstanding request, per block
	src   [][20]byte // who sent each block
	buf   []byte
	owner *conn // the connection that started it; nil once that one is gone
}

func (pt *partial) blockLen(b int) int { return min(BlockSize, pt.size-b*BlockSize) }

// downloader is the download side of a peer. All of it is guarded by the
// peer's mutex.
type downloader struct {
	p           *Peer
	n           int
	avail       []int32 // how many connected peers have each piece
	partials    map[int]*partial
	order       []*partial // partials in the order they were started
	verifying   map[int]bool
	maxPartials int
	trust       map[[20]byte]int
	banned      map[[20]byte]bool
	bans        []Ban
	hashFails   int
	data        []byte // with KeepData: verified pieces at their offsets
}

func newDownloader(p *Peer) *downloader {
	n := p.cfg.Payload.NumPieces()
	d := &downloader{
		p: p, n: n, avail: make([]int32, n),
		partials: map[int]*partial{}, verifying: map[int]bool{},
		maxPartials: 2*p.maxConns + 4,
		trust:       map[[20]byte]int{}, banned: map[[20]byte]bool{},
	}
	if p.cfg.KeepData {
		d.data = make([]byte, len(p.cfg.Payload.Data))
		for _, i := range p.have.Indices() {
			off := int64(i) * p.cfg.Payload.PieceLength
			copy(d.data[off:off+p.cfg.Payload.PieceSize(i)], p.cfg.Payload.Data[off:])
		}
	}
	return d
}

func (d *downloader) isBanned(id [20]byte) bool { return d.banned[id] }

// handle acts on a message about what the remote has, its choking, or a
// block it sends.
func (d *downloader) handle(k *conn, m pp.Message) error {
	if m.Type == pp.Piece {
		return d.piece(k, m)
	}
	p := d.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch m.Type {
	case pp.Have:
		i := int(m.Index)
		if i < 0 || i >= d.n {
			return fmt.Errorf("%w: HAVE for piece %d of %d", errPeer, i, d.n)
		}
		d.remoteGotLocked(k, i)
	case pp.Bitfield:
		bf, err := bitfield.FromBools(m.Bitfield, d.n)
		if err != nil {
			return fmt.Errorf("%w: %w", errPeer, err)
		}
		d.setRemoteLocked(k, bf)
	case pp.HaveAll:
		d.setRemoteLocked(k, bitfield.Full(d.n))
	case pp.HaveNone:
		d.setRemoteLocked(k, bitfield.New(d.n))
	case pp.Choke:
		// With or without the Fast extension, requests outstanding at a
		// choke are not counted on: they go back to the pool (a block that
		// still arrives is taken if it is needed).
		k.remoteChoking = true
		d.releaseLocked(k)
	case pp.Unchoke:
		k.remoteChoking = false
	case pp.Reject:
		r := blockReq{int(m.Index), int(m.Begin), int(m.Length)}
		if d.dropReqLocked(k, r) {
			d.unrequestLocked(k, r)
		}
	}
	if k.remoteComplete && d.p.have.Complete() {
		k.closed = true
		k.c.Close() // two seeds have nothing to say to each other
		return nil
	}
	d.updateInterestLocked(k)
	d.fillLocked(k)
	return nil
}

func (d *downloader) remoteGotLocked(k *conn, i int) {
	if !k.remoteHave.Set(i) {
		return
	}
	d.avail[i]++
	if !d.p.have.Has(i) {
		k.wanted++
	}
	k.remoteComplete = k.remoteHave.Complete()
}

func (d *downloader) setRemoteLocked(k *conn, bf bitfield.Bitfield) {
	k.wanted = 0
	for i := range d.n {
		was, now := k.remoteHave.Has(i), bf.Has(i)
		switch {
		case now && !was:
			d.avail[i]++
		case was && !now:
			d.avail[i]--
		}
		if now && !d.p.have.Has(i) {
			k.wanted++
		}
	}
	k.remoteHave = bf
	k.remoteComplete = bf.Complete()
}

func (d *downloader) updateInterestLocked(k *conn) {
	if want := k.wanted > 0; want != k.amInterested {
		k.amInterested = want
		if want {
			k.enqueue(pp.Message{Type: pp.Interested})
		} else {
			k.enqueue(pp.Message{Type: pp.NotInterested})
		}
	}
}

// gained updates interest after the peer got piece i.
func (d *downloader) gained(i int) {
	if pt := d.partials[i]; pt != nil {
		// Gained from outside (Peer.Gain): forget the download.
		for b := range pt.reqBy {
			for _, o := range pt.reqBy[b] {
				r := blockReq{i, b * BlockSize, pt.blockLen(b)}
				if d.dropReqLocked(o, r) {
					o.enqueue(r.msg(pp.Cancel))
				}
			}
		}
		d.removePartialLocked(pt)
	}
	for _, k := range d.p.conns {
		if k.remoteHave.Has(i) {
			k.wanted--
		}
		d.updateInterestLocked(k)
	}
}

// completed closes connections to peers that are complete too.
func (d *downloader) completed() {
	for _, k := range d.p.conns {
		if k.remoteComplete {
			k.closed = true
			k.c.Close()
		}
	}
}

// dropConn forgets a connection that ended.
func (d *downloader) dropConn(k *conn) {
	for _, i := range k.remoteHave.Indices() {
		d.avail[i]--
	}
	d.releaseLocked(k)
	for _, pt := range d.order {
		if pt.owner == k {
			pt.owner = nil
		}
	}
}

// releaseLocked returns all of k's outstanding requests to the pool.
func (d *downloader) releaseLocked(k *conn) {
	for _, r := range k.reqs {
		d.unrequestLocked(k, r)
	}
	k.reqs = nil
}

func (d *downloader) unrequestLocked(k *conn, r blockReq) {
	pt := d.partials[r.piece]
	if pt == nil || r.begin%BlockSize != 0 || r.begin/BlockSize >= len(pt.reqBy) {
		return
	}
	b := r.begin / BlockSize
	pt.reqBy[b] = slices.DeleteFunc(pt.reqBy[b], func(o *conn) bool { return o == k })
}

// dropReqLocked removes r from k's outstanding requests and reports
// whether it was there.
func (d *downloader) dropReqLocked(k *conn, r blockReq) bool {
	i := slices.Index(k.reqs, r)
	if i < 0 {
		return false
	}
	k.reqs = slices.Delete(k.reqs, i, i+1)
	return true
}

// fillLocked tops k's request pipeline up.
func (d *downloader) fillLocked(k *conn) {
	if k.closed || k.remoteChoking || !k.amInterested {
		return
	}
	var msgs []pp.Message
	for len(k.reqs) < d.p.queue {
		r, ok := d.nextLocked(k)
		if !ok {
			break
		}
		k.reqs = append(k.reqs, r)
		msgs = append(msgs, r.msg(pp.Request))
	}
	if len(msgs) > 0 {
		k.enqueue(msgs...)
	}
}

// nextLocked chooses the next block to ask k for: unrequested blocks of
// pieces k started, then of pieces whose starter is gone, then the first
// block of a new piece chosen rarest-first, and, once every missing piece
// is under way (end game), a second request for a block another
// connection is slow to deliver.
func (d *downloader) nextLocked(k *conn) (blockReq, bool) {
	for pass := range 2 {
		for _, pt := range d.order {
			if (pass == 0 && pt.owner != k) || (pass == 1 && pt.owner != nil) || !k.remoteHave.Has(pt.piece) {
				continue
			}
			for b, got := range pt.got {
				if !got && len(pt.reqBy[b]) == 0 {
					pt.owner = k
					return d.assignLocked(pt, b, k), true
				}
			}
		}
	}
	if len(d.partials) < d.maxPartials {
		if i, ok := d.pickLocked(k); ok {
			pt := d.startLocked(i, k)
			return d.assignLocked(pt, 0, k), true
		}
	}
	if d.notStartedLocked() > 0 {
		return blockReq{}, false
	}
	for _, pt := range d.order {
		if !k.remoteHave.Has(pt.piece) {
			continue
		}
		for b, got := range pt.got {
			if !got && len(pt.reqBy[b]) < 2 && !slices.Contains(pt.reqBy[b], k) {
				return d.assignLocked(pt, b, k), true
			}
		}
	}
	return blockReq{}, false
}

// pickLocked chooses a piece k has and we neither have nor are fetching:
// the one fewest connected peers have, ties broken at random.
func (d *downloader) pickLocked(k *conn) (int, bool) {
	best, ties := -1, 0
	for i := range d.n {
		if !k.remoteHave.Has(i) || d.p.have.Has(i) || d.partials[i] != nil || d.verifying[i] {
			continue
		}
		switch {
		case best < 0 || d.avail[i] < d.avail[best]:
			best, ties = i, 1
		case d.avail[i] == d.avail[best]:
			ties++
			if d.p.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best, best >= 0
}

// notStartedLocked counts missing pieces not yet being fetched.
func (d *downloader) notStartedLocked() int {
	n := 0
	for i := range d.n {
		if !d.p.have.Has(i) && d.partials[i] == nil && !d.verifying[i] {
			n++
		}
	}
	return n
}

func (d *downloader) startLocked(i int, k *conn) *partial {
	size := int(d.p.cfg.Payload.PieceSize(i))
	nb := (size + BlockSize - 1) / BlockSize
	pt := &partial{piece: i, size: size, got: make([]bool, nb), reqBy: make([][]*conn, nb),
		src: make([][20]byte, nb), buf: make([]byte, size), owner: k}
	d.partials[i] = pt
	d.order = append(d.order, pt)
	return pt
}

func (d *downloader) removePartialLocked(pt *partial) {
	delete(d.partials, pt.piece)
	d.order = slices.DeleteFunc(d.order, func(o *partial) bool { return o == pt })
}

func (d *downloader) assignLocked(pt *partial, b int, k *conn) blockReq {
	pt.reqBy[b] = append(pt.reqBy[b], k)
	return blockReq{pt.piece, b * BlockSize, pt.blockLen(b)}
}

// piece takes a block: it is stored if some partial piece needs it, and a
// completed piece is checked against its SHA-1.
func (d *downloader) piece(k *conn, m pp.Message) error {
	p := d.p
	i, begin, n := int(m.Index), int(m.Begin), len(m.Piece)
	if i < 0 || i >= d.n || begin < 0 || n == 0 || int64(begin)+int64(n) > p.cfg.Payload.PieceSize(i) {
		return fmt.Errorf("%w: block %d+%d of piece %d is out of bounds", errPeer, begin, n, i)
	}
	p.downloaded.Add(int64(n))
	if p.dlimiter != nil {
		for left := n; left > 0; left -= limiterChunk {
			if err := p.dlimiter.WaitN(p.ctx, min(left, limiterChunk)); err != nil {
				return err
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := blockReq{i, begin, n}
	d.dropReqLocked(k, r)
	pt := d.partials[i]
	b := begin / BlockSize
	if pt == nil || begin%BlockSize != 0 || b >= len(pt.got) || n != pt.blockLen(b) || pt.got[b] {
		p.wasted.Add(int64(n)) // unrequested, duplicate or misaligned
		d.fillLocked(k)
		return nil
	}
	copy(pt.buf[begin:], m.Piece)
	pt.got[b] = true
	pt.nGot++
	pt.src[b] = k.id
	k.lastUseful = time.Now()
	for _, o := range pt.reqBy[b] {
		if o != k && d.dropReqLocked(o, r) {
			o.enqueue(r.msg(pp.Cancel))
			d.fillLocked(o)
		}
	}
	pt.reqBy[b] = nil
	if pt.nGot < len(pt.got) {
		d.fillLocked(k)
		return nil
	}
	d.removePartialLocked(pt)
	d.verifying[i] = true
	p.mu.Unlock()
	ok := sha1.Sum(pt.buf) == p.cfg.Payload.PieceHash(i)
	p.mu.Lock()
	delete(d.verifying, i)
	if p.closed {
		return nil
	}
	if ok {
		d.passLocked(pt)
	} else {
		d.failLocked(pt)
	}
	d.fillLocked(k)
	return nil
}

func (d *downloader) passLocked(pt *partial) {
	p := d.p
	if d.data != nil {
		copy(d.data[int64(pt.piece)*p.cfg.Payload.PieceLength:], pt.buf)
	}
	for _, id := range uniqueIDs(pt.src) {
		d.trust[id] = min(d.trust[id]+trustPass, trustMax)
	}
	p.gainLocked(pt.piece)
}

func (d *downloader) failLocked(pt *partial) {
	p := d.p
	d.hashFails++
	p.wasted.Add(int64(pt.size))
	ids := uniqueIDs(pt.src)
	p.cfg.Logger.Debug("swarmsim piece failed its hash check", "piece", pt.piece, "sources", len(ids))
	for _, id := range ids {
		d.trust[id] += trustFail
		if len(ids) == 1 {
			d.banLocked(id, fmt.Sprintf("piece %d failed its hash check; it alone sent it", pt.piece))
		} else if d.trust[id] <= trustBan {
			d.banLocked(id, fmt.Sprintf("piece %d failed its hash check; trust %d", pt.piece, d.trust[id]))
		}
	}
	// The piece is fetched again: its partial is gone, so it is picked anew.
	for _, k := range d.p.conns {
		d.updateInterestLocked(k)
	}
}

// banLocked closes every connection to id and never talks to it again.
func (d *downloader) banLocked(id [20]byte, reason string) {
	if d.banned[id] {
		return
	}
	d.banned[id] = true
	ban := Ban{PeerID: id, At: time.Now(), Reason: reason}
	for _, k := range d.p.sortedConnsLocked() {
		if k.id != id {
			continue
		}
		if !ban.Addr.IsValid() {
			ban.Addr = k.c.Remote
			if k.listen.IsValid() {
				ban.Addr = k.listen
			}
		}
		if k.listen.IsValid() {
			d.p.book.ban(k.listen)
		}
		k.closed = true
		k.c.Close()
	}
	d.bans = append(d.bans, ban)
	d.p.cfg.Logger.Debug("swarmsim ban", "peer_id", fmt.Sprintf("%q", id[:]), "addr", ban.Addr, "reason", reason)
}

func uniqueIDs(ids [][20]byte) [][20]byte {
	var out [][20]byte
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// Bans lists the peers this peer banned for bad data, in order.
func (p *Peer) Bans() []Ban {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dl == nil {
		return nil
	}
	return slices.Clone(p.dl.bans)
}

// HashFailures is the number of downloaded pieces that failed their SHA-1
// check.
func (p *Peer) HashFailures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dl == nil {
		return 0
	}
	return p.dl.hashFails
}

// Wasted is the payload bytes received that were not used: duplicate or
// unrequested blocks and pieces that failed their hash check.
func (p *Peer) Wasted() int64 { return p.wasted.Load() }

// Data returns a copy of the payload as the peer holds it (with KeepData):
// the bytes of every piece it started with or downloaded and verified, and
// zeros elsewhere. It is nil without KeepData.
func (p *Peer) Data() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dl == nil || p.dl.data == nil {
		return nil
	}
	return slices.Clone(p.dl.data)
}
