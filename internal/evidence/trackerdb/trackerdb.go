// Package trackerdb reads what a private tracker itself recorded of its
// users' reports, from the tracker's own database, so that an audit checks
// those reports without a recording tracker in front of the real one:
//
//   - UNIT3D (Laravel; MariaDB/MySQL): table `peers` — one row per
//     (user_id, torrent_id, peer_id), rewritten at every announce with the
//     client's counters (`uploaded`, `downloaded`, `left`), `ip`, `port`,
//     `agent`, `updated_at` — and `torrents` (`id`, `info_hash`, `name`).
//   - Gazelle with Ocelot: table `xbt_files_users` — one row per (`uid`,
//     `fid`, `peer_id`), rewritten at every announce with `uploaded`,
//     `downloaded`, `remaining`, `ip`, `useragent` and `mtime` (Unix time) —
//     and `torrents` (`ID`, `info_hash`). Ocelot keeps no port there: its
//     peers are identified by peer_id, not probed by address.
//
// Every row rewritten since the last poll becomes one reported.Announce
// (user id in UserID, Source "unit3d" or "gazelle"). Polls read forward
// from a cursor over (update time, key), in bounded batches, never a full
// rescan; the torrent id → info hash map is read forward by id the same
// way. Columns are read by their real names, so the connector reads a live
// tracker's tables as they are.
package trackerdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
)

// Schema names a tracker's database layout.
type Schema string

// The schemas read.
const (
	UNIT3D  Schema = "unit3d"
	Gazelle Schema = "gazelle"
)

// ParseSchema reads a --tracker-schema value.
func ParseSchema(s string) (Schema, error) {
	switch Schema(s) {
	case UNIT3D, Gazelle:
		return Schema(s), nil
	}
	return "", fmt.Errorf("tracker schema %q: want unit3d or gazelle", s)
}

// Config configures a reader.
type Config struct {
	DB     *sql.DB
	Schema Schema
	// Since is where the first poll starts: rows rewritten after it.
	Since time.Time
	// Batch is the rows read per query (default 1000); MaxRows bounds one
	// Poll (default 100000): the rest comes at the next.
	Batch, MaxRows int
	// Announces (UNIT3D) reads the optional `announces` table — one row per
	// announce, when the tracker logs them — instead of `peers`: every
	// report, not only the latest per peer at each poll. Its address comes
	// from the peer's `peers` row.
	Announces bool
}

// ErrSchema is returned when the database lacks a table or column the
// schema needs.
var ErrSchema = errors.New("trackerdb: the database does not have the expected tables")

// Reader polls one tracker database. It is not safe for concurrent use.
type Reader struct {
	cfg      Config
	torrents map[int64]infohash.T
	names    map[infohash.T]string // UNIT3D's torrents.name
	lastTID  int64
	// cursor: the last row read, by update time then key.
	at   int64 // UNIT3D: updated_at as Unix µs; Gazelle: mtime in seconds
	key1 int64 // UNIT3D: peers.id; Gazelle: fid
	key2 int64 // Gazelle: uid
	key3 []byte
}

// New checks the configuration and that the tables are there.
func New(ctx context.Context, cfg Config) (*Reader, error) {
	if cfg.DB == nil {
		return nil, errors.New("trackerdb: no database")
	}
	if _, err := ParseSchema(string(cfg.Schema)); err != nil {
		return nil, err
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 100000
	}
	r := &Reader{cfg: cfg, torrents: map[int64]infohash.T{}, names: map[infohash.T]string{}, key3: []byte{}}
	if cfg.Schema == UNIT3D {
		r.at = cfg.Since.UnixMicro()
	} else {
		r.at = cfg.Since.Unix()
	}
	probe := map[Schema]string{
		UNIT3D:  "SELECT id, peer_id, ip, port, agent, uploaded, downloaded, `left`, torrent_id, user_id, updated_at FROM peers LIMIT 0",
		Gazelle: "SELECT uid, fid, peer_id, ip, useragent, uploaded, downloaded, remaining, mtime FROM xbt_files_users LIMIT 0",
	}[cfg.Schema]
	if cfg.Announces {
		if cfg.Schema != UNIT3D {
			return nil, fmt.Errorf("trackerdb: the announces table is UNIT3D's, not %s's", cfg.Schema)
		}
		probe = "SELECT id, user_id, torrent_id, uploaded, downloaded, `left`, peer_id, port, event, created_at FROM announces LIMIT 0"
	}
	rows, err := cfg.DB.QueryContext(ctx, probe)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrSchema, cfg.Schema, err)
	}
	rows.Close()
	return r, nil
}

// Poll returns the reports the tracker recorded since the last poll (at
// most MaxRows; rows of torrents the tracker does not list are skipped).
func (r *Reader) Poll(ctx context.Context) ([]reported.Announce, error) {
	if err := r.readTorrents(ctx); err != nil {
		return nil, err
	}
	var out []reported.Announce
	for len(out) < r.cfg.MaxRows {
		n, err := r.batch(ctx, &out)
		if err != nil {
			return out, err
		}
		if n < r.cfg.Batch {
			break
		}
	}
	return out, nil
}

// readTorrents extends the torrent id → info hash map, forward by id.
func (r *Reader) readTorrents(ctx context.Context) error {
	q := map[Schema]string{
		UNIT3D: "SELECT id, info_hash, name FROM torrents WHERE id > ? ORDER BY id LIMIT ?",
		// Gazelle names a release in torrents_group, not in torrents.
		Gazelle: "SELECT ID, info_hash, '' FROM torrents WHERE ID > ? ORDER BY ID LIMIT ?",
	}[r.cfg.Schema]
	for range r.cfg.MaxRows/r.cfg.Batch + 1 {
		rows, err := r.cfg.DB.QueryContext(ctx, q, r.lastTID, r.cfg.Batch)
		if err != nil {
			return fmt.Errorf("trackerdb: torrents: %w", err)
		}
		n := 0
		for rows.Next() {
			var id int64
			var raw []byte
			var name string
			if err := rows.Scan(&id, &raw, &name); err != nil {
				rows.Close()
				return fmt.Errorf("trackerdb: torrents: %w", err)
			}
			n++
			r.lastTID = id
			if ih, ok := infoHash(raw); ok {
				r.torrents[id] = ih
				if name != "" {
					r.names[ih] = cleanName(name)
				}
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("trackerdb: torrents: %w", err)
		}
		if n < r.cfg.Batch {
			return nil
		}
	}
	return nil
}

// batch reads one batch of rows after the cursor.
func (r *Reader) batch(ctx context.Context, out *[]reported.Announce) (int, error) {
	var rows *sql.Rows
	var err error
	switch {
	case r.cfg.Announces:
		return r.announcesBatch(ctx, out)
	case r.cfg.Schema == UNIT3D:
		rows, err = r.cfg.DB.QueryContext(ctx, "SELECT id, peer_id, ip, port, agent, uploaded, downloaded, `left`, torrent_id, user_id, updated_at FROM peers"+
			" WHERE updated_at IS NOT NULL AND (updated_at > ? OR (updated_at = ? AND id > ?)) ORDER BY updated_at, id LIMIT ?",
			time.UnixMicro(r.at).UTC(), time.UnixMicro(r.at).UTC(), r.key1, r.cfg.Batch)
	case r.cfg.Schema == Gazelle:
		rows, err = r.cfg.DB.QueryContext(ctx, "SELECT uid, fid, peer_id, ip, useragent, uploaded, downloaded, remaining, mtime FROM xbt_files_users"+
			" WHERE (mtime, fid, uid, peer_id) > (?, ?, ?, ?) ORDER BY mtime, fid, uid, peer_id LIMIT ?",
			r.at, r.key1, r.key2, r.key3, r.cfg.Batch)
	}
	if err != nil {
		return 0, fmt.Errorf("trackerdb: %s: %w", r.cfg.Schema, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var a reported.Announce
		var peerID, ip []byte
		var agent string
		var tid, uid int64
		var up, down, left counter
		switch r.cfg.Schema {
		case UNIT3D:
			var id int64
			var port uint16
			var at time.Time
			if err := rows.Scan(&id, &peerID, &ip, &port, &agent, &up, &down, &left, &tid, &uid, &at); err != nil {
				return n, fmt.Errorf("trackerdb: peers: %w", err)
			}
			r.at, r.key1 = at.UnixMicro(), id
			a.At, a.Port = at.UTC(), port
		case Gazelle:
			var mtime int64
			if err := rows.Scan(&uid, &tid, &peerID, &ip, &agent, &up, &down, &left, &mtime); err != nil {
				return n, fmt.Errorf("trackerdb: xbt_files_users: %w", err)
			}
			r.at, r.key1, r.key2, r.key3 = mtime, tid, uid, append([]byte(nil), peerID...)
			a.At = time.Unix(mtime, 0).UTC()
		}
		ih, ok := r.torrents[tid]
		if !ok {
			continue
		}
		a.InfoHash, a.IP = ih, parseIP(ip)
		copy(a.PeerID[:], peerID)
		a.Uploaded, a.Downloaded, a.Left = int64(up), int64(down), int64(left)
		a.UserID, a.UserAgent, a.Source = strconv.FormatInt(uid, 10), agent, string(r.cfg.Schema)
		*out = append(*out, a)
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("trackerdb: %s: %w", r.cfg.Schema, err)
	}
	return n, nil
}

// infoHash reads an info hash stored as 20 bytes (UNIT3D since v7,
// Gazelle) or as 40 hex digits (older UNIT3D).
func infoHash(raw []byte) (infohash.T, bool) {
	var ih infohash.T
	switch len(raw) {
	case 20:
		copy(ih[:], raw)
		return ih, true
	case 40:
		return ih, ih.FromHexString(string(raw)) == nil
	}
	return ih, false
}

// parseIP reads an address stored as 4 or 16 bytes (UNIT3D's varbinary
// column) or as text (Ocelot's, older UNIT3D's); unreadable is invalid.
func parseIP(raw []byte) netip.Addr {
	if ip := net.ParseIP(string(raw)); ip != nil {
		if a, ok := netip.AddrFromSlice(ip); ok {
			return a.Unmap()
		}
	}
	if len(raw) == 4 || len(raw) == 16 {
		if a, ok := netip.AddrFromSlice(raw); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// counter scans a byte counter stored signed (Ocelot) or unsigned
// (UNIT3D), as an integer or as text: negative is 0, beyond int64 is
// capped.
type counter int64

func (c *counter) Scan(v any) error {
	switch x := v.(type) {
	case int64:
		*c = counter(max(x, 0))
	case uint64:
		*c = counter(min(x, 1<<62))
	case []byte:
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			*c = counter(min(u, 1<<62))
			return nil
		}
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			*c = counter(max(i, 0))
			return nil
		}
		return fmt.Errorf("counter %q is not an integer", x)
	case nil:
		*c = 0
	default:
		return fmt.Errorf("counter of type %T", v)
	}
	return nil
}

// announcesBatch reads one batch of UNIT3D's announces table, forward by
// id (r.key1), each with the address of its peer's row.
func (r *Reader) announcesBatch(ctx context.Context, out *[]reported.Announce) (int, error) {
	rows, err := r.cfg.DB.QueryContext(ctx, "SELECT a.id, a.user_id, a.torrent_id, a.uploaded, a.downloaded, a.`left`, a.peer_id, a.port, a.event, a.created_at, p.ip"+
		" FROM announces a LEFT JOIN peers p ON p.user_id = a.user_id AND p.torrent_id = a.torrent_id AND p.peer_id = a.peer_id"+
		" WHERE a.id > ? AND a.created_at >= ? ORDER BY a.id LIMIT ?", r.key1, time.UnixMicro(r.at).UTC(), r.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("trackerdb: announces: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var id, uid, tid int64
		var up, down, left counter
		var peerID, ip []byte
		var port uint16
		var event sql.NullString
		var at time.Time
		if err := rows.Scan(&id, &uid, &tid, &up, &down, &left, &peerID, &port, &event, &at, &ip); err != nil {
			return n, fmt.Errorf("trackerdb: announces: %w", err)
		}
		r.key1 = id
		ih, ok := r.torrents[tid]
		if !ok {
			continue
		}
		a := reported.Announce{At: at.UTC(), InfoHash: ih, IP: parseIP(ip), Port: port, Uploaded: int64(up), Downloaded: int64(down), Left: int64(left),
			UserID: strconv.FormatInt(uid, 10), Source: string(r.cfg.Schema)}
		copy(a.PeerID[:], peerID)
		if ev, err := reported.ParseEvent(event.String); err == nil {
			a.Event = ev
		}
		*out = append(*out, a)
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("trackerdb: announces: %w", err)
	}
	return n, nil
}

// Name is the name the tracker gives a torrent ("" when it has none).
func (r *Reader) Name(ih infohash.T) string { return r.names[ih] }

// cleanName bounds a name read from the database: valid UTF-8, at most
// 255 bytes.
func cleanName(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > 255 {
		s = strings.ToValidUTF8(s[:255], "")
	}
	return s
}
