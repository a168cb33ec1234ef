package testclients

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// transmission drives transmission-daemon 3.00 over its JSON-RPC API.
type transmission struct {
	url     string
	http    *http.Client
	hash    string // hex infohash, the torrent's id in RPC calls
	torrent string
	dataDir string
	p       *process

	mu    sync.Mutex
	sid   string // X-Transmission-Session-Id
	added bool
}

func (c *Client) prepareTransmission(o Options) (*exec.Cmd, error) {
	rpc := c.APIAddr
	// The RPC answers only whitelisted sources: loopback, and in a namespace
	// the /24 of o.IP, where the root namespace's address on the link is.
	whitelist := "127.*.*.*"
	if o.Netns != "" {
		b := c.Addr.Addr().As4()
		whitelist += fmt.Sprintf(",%d.%d.%d.*", b[0], b[1], b[2])
	}
	conf := filepath.Join(c.Dir, "config")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		return nil, fmt.Errorf("config dir: %w", err)
	}
	enc := map[Encryption]int{EncDisabled: 0, EncPreferred: 1, EncRequired: 2}[o.Encryption]
	// The daemon's speed unit is 1000 B/s ("kB/s"); round up so the cap is never below the request.
	kB := func(kib int) int { return (kib*1024 + 999) / 1000 }
	settings := map[string]any{
		"bind-address-ipv4":            o.IP,
		"bind-address-ipv6":            "::1",
		"peer-port":                    c.Addr.Port(),
		"peer-port-random-on-start":    false,
		"port-forwarding-enabled":      false,
		"dht-enabled":                  false,
		"lpd-enabled":                  false,
		"pex-enabled":                  o.PEX,
		"utp-enabled":                  false,
		"blocklist-enabled":            false,
		"encryption":                   enc,
		"rpc-enabled":                  true,
		"rpc-bind-address":             o.IP,
		"rpc-port":                     rpc.Port(),
		"rpc-authentication-required":  false,
		"rpc-whitelist-enabled":        true,
		"rpc-whitelist":                whitelist,
		"rpc-host-whitelist-enabled":   false,
		"download-dir":                 o.DataDir,
		"incomplete-dir-enabled":       false,
		"watch-dir-enabled":            false,
		"speed-limit-up":               kB(o.UploadLimitKiB),
		"speed-limit-up-enabled":       o.UploadLimitKiB > 0,
		"speed-limit-down":             kB(o.DownloadLimitKiB),
		"speed-limit-down-enabled":     o.DownloadLimitKiB > 0,
		"alt-speed-enabled":            false,
		"ratio-limit-enabled":          false,
		"idle-seeding-limit-enabled":   false,
		"download-queue-enabled":       false,
		"seed-queue-enabled":           false,
		"queue-stalled-enabled":        false,
		"peer-limit-global":            200,
		"peer-limit-per-torrent":       50,
		"rename-partial-files":         false,
		"start-added-torrents":         true,
		"trash-original-torrent-files": false,
		"message-level":                2,
		"umask":                        18,
	}
	b, err := json.MarshalIndent(settings, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("settings.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(conf, "settings.json"), b, 0o644); err != nil {
		return nil, fmt.Errorf("settings.json: %w", err)
	}
	mi, err := os.ReadFile(o.TorrentFile)
	if err != nil {
		return nil, fmt.Errorf("read torrent: %w", err)
	}
	c.api = &transmission{
		url:     "http://" + rpc.String() + "/transmission/rpc",
		http:    newHTTPClient(),
		hash:    hex.EncodeToString(c.InfoHash[:]),
		torrent: base64.StdEncoding.EncodeToString(mi),
		dataDir: o.DataDir,
		p:       c.proc,
	}
	return exec.Command("transmission-daemon", "-f", "-g", conf, "--log-info"), nil
}

// trRPC errors: the daemon answers HTTP 200 with a "result" word other than "success".
var errTransmissionRPC = errors.New("transmission RPC failed")

func (tr *transmission) call(ctx context.Context, method string, args any, out any) error {
	body, err := json.Marshal(map[string]any{"method": method, "arguments": args})
	if err != nil {
		return fmt.Errorf("transmission %s: %w", method, err)
	}
	for range 2 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, tr.url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("transmission %s: %w", method, err)
		}
		req.Header.Set("Content-Type", "application/json")
		tr.mu.Lock()
		req.Header.Set("X-Transmission-Session-Id", tr.sid)
		tr.mu.Unlock()
		resp, err := tr.http.Do(req)
		if err != nil {
			return fmt.Errorf("transmission %s: %w", method, err)
		}
		rb, err := readBody(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("transmission %s: read: %w", method, err)
		}
		if resp.StatusCode == http.StatusConflict { // CSRF token handshake
			tr.mu.Lock()
			tr.sid = resp.Header.Get("X-Transmission-Session-Id")
			tr.mu.Unlock()
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("transmission %s: HTTP %s", method, resp.Status)
		}
		var r struct {
			Result    string          `json:"result"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.Unmarshal(rb, &r); err != nil {
			return fmt.Errorf("transmission %s: decode: %w", method, err)
		}
		if r.Result != "success" {
			return fmt.Errorf("transmission %s: %w: %q", method, errTransmissionRPC, r.Result)
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(r.Arguments, out); err != nil {
			return fmt.Errorf("transmission %s: decode arguments: %w", method, err)
		}
		return nil
	}
	return fmt.Errorf("transmission %s: no session id after HTTP 409", method)
}

func (tr *transmission) ready(ctx context.Context) error {
	tr.mu.Lock()
	added := tr.added
	tr.mu.Unlock()
	if added {
		return nil
	}
	if err := tr.call(ctx, "session-get", map[string]any{}, nil); err != nil {
		return err
	}
	err := tr.call(ctx, "torrent-add", map[string]any{
		"metainfo": tr.torrent, "download-dir": tr.dataDir, "paused": false,
	}, nil)
	if err != nil {
		return err
	}
	tr.mu.Lock()
	tr.added = true
	tr.mu.Unlock()
	return nil
}

var transmissionFields = []string{"hashString", "status", "percentDone", "leftUntilDone", "sizeWhenDone",
	"uploadedEver", "downloadedEver", "rateUpload", "rateDownload", "peersConnected", "error", "errorString",
	"recheckProgress"}

func (tr *transmission) stats(ctx context.Context) (Stats, error) {
	var args json.RawMessage
	err := tr.call(ctx, "torrent-get", map[string]any{"ids": []string{tr.hash}, "fields": transmissionFields}, &args)
	if err != nil {
		return Stats{}, err
	}
	return decodeTransmission(args)
}

// Transmission torrent status values (tr_torrent_activity).
const (
	trStopped = iota
	trCheckWait
	trCheck
	trDownloadWait
	trDownload
	trSeedWait
	trSeed
)

// decodeTransmission decodes the arguments of a torrent-get reply.
func decodeTransmission(b []byte) (Stats, error) {
	var r struct {
		Torrents []struct {
			Status         int     `json:"status"`
			PercentDone    float64 `json:"percentDone"`
			LeftUntilDone  int64   `json:"leftUntilDone"`
			SizeWhenDone   int64   `json:"sizeWhenDone"`
			UploadedEver   int64   `json:"uploadedEver"`
			DownloadedEver int64   `json:"downloadedEver"`
			RateUpload     int64   `json:"rateUpload"`
			RateDownload   int64   `json:"rateDownload"`
			PeersConnected int     `json:"peersConnected"`
			Error          int     `json:"error"`
			ErrorString    string  `json:"errorString"`
		} `json:"torrents"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Stats{}, fmt.Errorf("decode torrent-get: %w", err)
	}
	if len(r.Torrents) != 1 {
		return Stats{}, fmt.Errorf("torrent-get: %d torrents, want 1", len(r.Torrents))
	}
	x := r.Torrents[0]
	names := []string{"stopped", "check-wait", "checking", "download-wait", "downloading", "seed-wait", "seeding"}
	state := fmt.Sprintf("status-%d", x.Status)
	if x.Status >= 0 && x.Status < len(names) {
		state = names[x.Status]
	}
	st := Stats{
		Uploaded:     x.UploadedEver,
		Downloaded:   x.DownloadedEver,
		Size:         x.SizeWhenDone,
		Left:         x.LeftUntilDone,
		Progress:     x.PercentDone,
		Checking:     x.Status == trCheckWait || x.Status == trCheck,
		NumPeers:     x.PeersConnected,
		UploadRate:   x.RateUpload,
		DownloadRate: x.RateDownload,
		State:        state,
	}
	if x.Error != 0 {
		st.Error = fmt.Sprintf("%d: %s", x.Error, x.ErrorString)
	}
	st.Seeding = x.Status == trSeed && x.LeftUntilDone == 0 && x.PercentDone == 1
	return st, nil
}

// stop stops the torrent over RPC first: transmission-daemon 3.00 sends no
// 'stopped' announce when it exits on SIGTERM, but does when the torrent is
// stopped. It waits (bounded) for that announce, then sends SIGTERM.
func (tr *transmission) stop(ctx context.Context) error {
	var errs []error
	prev, err := tr.trackerStats(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	// Announce times have a resolution of one second: stop in a later second
	// than the last announce started, so the 'stopped' one is recognisable.
	for _, ts := range prev {
		if wait := time.Until(time.Unix(ts.LastAnnounceStartTime+1, 0)); wait > 0 && wait <= time.Second {
			time.Sleep(wait)
		}
	}
	if err := tr.call(ctx, "torrent-stop", map[string]any{"ids": []string{tr.hash}}, nil); err != nil {
		errs = append(errs, err)
	} else if len(prev) > 0 {
		if err := tr.waitStoppedAnnounce(ctx, prev); err != nil {
			errs = append(errs, err)
		}
	}
	if err := tr.p.signal(syscall.SIGTERM); err != nil {
		errs = append(errs, fmt.Errorf("SIGTERM: %w", err))
	}
	return errors.Join(errs...)
}

type trTrackerStat struct {
	ID                    int   `json:"id"`
	HasAnnounced          bool  `json:"hasAnnounced"`
	AnnounceState         int   `json:"announceState"` // 0 inactive, 1 waiting, 2 queued, 3 active
	LastAnnounceStartTime int64 `json:"lastAnnounceStartTime"`
	LastAnnounceTime      int64 `json:"lastAnnounceTime"`
}

func (tr *transmission) trackerStats(ctx context.Context) ([]trTrackerStat, error) {
	var r struct {
		Torrents []struct {
			TrackerStats []trTrackerStat `json:"trackerStats"`
		} `json:"torrents"`
	}
	err := tr.call(ctx, "torrent-get", map[string]any{"ids": []string{tr.hash}, "fields": []string{"trackerStats"}}, &r)
	if err != nil {
		return nil, err
	}
	if len(r.Torrents) != 1 {
		return nil, fmt.Errorf("transmission: trackerStats of %d torrents, want 1", len(r.Torrents))
	}
	return r.Torrents[0].TrackerStats, nil
}

// waitStoppedAnnounce waits, for at most 4 s, until every tracker that had
// been announced to has started and finished an announce after prev.
func (tr *transmission) waitStoppedAnnounce(ctx context.Context, prev []trTrackerStat) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	before := map[int]trTrackerStat{}
	for _, ts := range prev {
		before[ts.ID] = ts
	}
	for {
		cur, err := tr.trackerStats(ctx)
		if err == nil {
			done := true
			for _, ts := range cur {
				p, ok := before[ts.ID]
				if !ok || !p.HasAnnounced {
					continue // never announced 'started': nothing to stop
				}
				if ts.LastAnnounceStartTime <= p.LastAnnounceStartTime || ts.LastAnnounceTime < ts.LastAnnounceStartTime ||
					ts.AnnounceState == 3 {
					done = false
				}
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("transmission: waiting for the 'stopped' announce: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
