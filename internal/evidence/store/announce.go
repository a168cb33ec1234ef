package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

var _ reported.Recorder = (*Store)(nil)

// announceTimeout bounds RecordAnnounce, whose interface has no context.
const announceTimeout = 10 * time.Second

const qInsertAnnounce = `INSERT INTO announces (swarm_id, at_us, peer_id, ip, port, uploaded, downloaded, left_bytes,
	event, announce_key, passkey, user_agent, source, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// RecordAnnounce stores one announce, creating its swarm (known by info hash
// only) if needed. It returns once the announce is committed.
func (s *Store) RecordAnnounce(a reported.Announce) error {
	ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
	defer cancel()
	return s.AddAnnounce(ctx, a)
}

// AddAnnounce is RecordAnnounce with a context.
func (s *Store) AddAnnounce(ctx context.Context, a reported.Announce) error {
	what := "record announce for " + a.InfoHash.HexString()
	if err := checkTime("announce", a.At); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if a.InfoHash == (infohash.T{}) {
		return fmt.Errorf("%s: %w: zero info hash", what, ErrInvalid)
	}
	ip := ""
	if a.IP.IsValid() {
		ip = a.IP.String() // kept as received: this is evidence
	}
	id, known := s.swarmByHash(a.InfoHash)
	var si SwarmInfo
	return s.writeTx(ctx, what, func(tx *sql.Tx) error {
		if !known {
			var err error
			if id, si, err = s.ensureSwarmTx(ctx, tx, SwarmInfo{InfoHash: a.InfoHash}); err != nil {
				return err
			}
		}
		_, err := s.txStmt(ctx, tx, qInsertAnnounce).ExecContext(ctx, id, micros(a.At), a.PeerID[:], ip, int(a.Port), a.Uploaded, a.Downloaded, a.Left,
			cleanText(string(a.Event), maxShort), cleanText(a.Key, maxText), cleanText(a.Passkey, maxText),
			cleanText(a.UserAgent, maxText), cleanText(a.Source, maxText), cleanText(a.UserID, maxText))
		return err
	}, func() {
		if !known {
			s.cacheSwarm(id, si)
		}
	})
}

// Announces returns the announces for an info hash at or after since (zero:
// all), in time order. An unknown info hash has none.
func (s *Store) Announces(ctx context.Context, ih infohash.T, since time.Time) ([]reported.Announce, error) {
	sinceUS := int64(-1 << 63)
	if !since.IsZero() {
		sinceUS = micros(since)
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT a.at_us, a.peer_id, a.ip, a.port, a.uploaded, a.downloaded, a.left_bytes,
		a.event, a.announce_key, a.passkey, a.user_agent, a.source, a.user_id
		FROM announces a JOIN swarms w ON w.id = a.swarm_id
		WHERE w.info_hash = ? AND a.at_us >= ? ORDER BY a.at_us, a.id`), ih[:], sinceUS)
	if err != nil {
		return nil, fmt.Errorf("announces for %s: %w", ih.HexString(), err)
	}
	defer rows.Close()
	var out []reported.Announce
	for rows.Next() {
		a := reported.Announce{InfoHash: ih}
		var atUS int64
		var peerID []byte
		var ip string
		var port int
		var event string
		if err := rows.Scan(&atUS, &peerID, &ip, &port, &a.Uploaded, &a.Downloaded, &a.Left,
			&event, &a.Key, &a.Passkey, &a.UserAgent, &a.Source, &a.UserID); err != nil {
			return nil, fmt.Errorf("announces for %s: %w", ih.HexString(), err)
		}
		if len(peerID) != len(a.PeerID) || port < 0 || port > 65535 {
			return nil, fmt.Errorf("announces for %s: %w: peer id of %d bytes, port %d", ih.HexString(), ErrCorrupt, len(peerID), port)
		}
		copy(a.PeerID[:], peerID)
		if ip != "" {
			if a.IP, err = netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("announces for %s: %w: %w", ih.HexString(), ErrCorrupt, err)
			}
		}
		a.At, a.Port, a.Event = fromMicros(atUS), uint16(port), reported.Event(event)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("announces for %s: %w", ih.HexString(), err)
	}
	return out, nil
}

// LatestAnnounce is the time of the newest announce stored from source
// (zero when there is none): where a tracker-database connector resumes
// after a restart, instead of reading the tracker's tables again.
func (s *Store) LatestAnnounce(ctx context.Context, source string) (time.Time, error) {
	var us sql.NullInt64
	if err := s.r.QueryRowContext(ctx, s.d.q(`SELECT MAX(at_us) FROM announces WHERE source = ?`), source).Scan(&us); err != nil {
		return time.Time{}, fmt.Errorf("latest announce from %s: %w", source, err)
	}
	if !us.Valid {
		return time.Time{}, nil
	}
	return fromMicros(us.Int64), nil
}
