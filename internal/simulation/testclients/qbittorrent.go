package testclients

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// qbittorrent drives qbittorrent-nox 4.5 over its Web API (v2), with the
// Web UI's authentication bypassed for 127.0.0.0/8 and, in a network
// namespace, for the /24 of Options.IP.
type qbittorrent struct {
	base    string
	http    *http.Client
	hash    string
	torrent string // path of the .torrent
	dataDir string
	p       *process

	mu    sync.Mutex
	added bool
}

func (c *Client) prepareQBittorrent(o Options) (*exec.Cmd, error) {
	web := c.APIAddr
	whitelist := "127.0.0.0/8"
	if o.Netns != "" {
		whitelist += ", " + lan24(c.Addr.Addr()).String()
	}
	profile := filepath.Join(c.Dir, "profile")
	conf := filepath.Join(profile, "qBittorrent", "config")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	enc := map[Encryption]int{EncPreferred: 0, EncRequired: 1, EncDisabled: 2}[o.Encryption]
	ini := fmt.Sprintf(`[LegalNotice]
Accepted=true

[BitTorrent]
Session\Port=%d
Session\InterfaceAddress=%s
Session\Encryption=%d
Session\DHTEnabled=false
Session\LSDEnabled=false
Session\PeXEnabled=%t
Session\BTProtocol=TCP
Session\MultiConnectionsPerIp=true
Session\IgnoreLimitsOnLAN=false
Session\QueueingSystemEnabled=false
Session\DefaultSavePath=%s
Session\TempPathEnabled=false
Session\DisableAutoTMMByDefault=true
Session\AnnounceToAllTrackers=true
Session\AnnounceToAllTiers=true
Session\GlobalUPSpeedLimit=%d
Session\GlobalDLSpeedLimit=%d
Session\AddTrackersEnabled=false
Session\ReannounceWhenAddressChanged=false

[Network]
PortForwardingEnabled=false

[Preferences]
Connection\ResolvePeerCountries=false
General\Locale=en
WebUI\Address=%s
WebUI\Port=%d
WebUI\LocalHostAuth=false
WebUI\AuthSubnetWhitelistEnabled=true
WebUI\AuthSubnetWhitelist=%s
WebUI\HostHeaderValidation=false
WebUI\CSRFProtection=false
WebUI\UseUPnP=false
`, c.Addr.Port(), o.IP, enc, o.PEX, o.DataDir, o.UploadLimitKiB, o.DownloadLimitKiB, o.IP, web.Port(), whitelist)
	if err := os.WriteFile(filepath.Join(conf, "qBittorrent.conf"), []byte(ini), 0o644); err != nil {
		return nil, fmt.Errorf("qBittorrent.conf: %w", err)
	}
	c.proc.logFiles = append(c.proc.logFiles, filepath.Join(profile, "qBittorrent", "data", "logs", "qbittorrent.log"))
	c.api = &qbittorrent{
		base:    "http://" + web.String() + "/api/v2",
		http:    newHTTPClient(),
		hash:    hex.EncodeToString(c.InfoHash[:]),
		torrent: o.TorrentFile,
		dataDir: o.DataDir,
		p:       c.proc,
	}
	return exec.Command("qbittorrent-nox", "--profile="+profile), nil
}

func (q *qbittorrent) do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, q.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("qbittorrent %s: %w", path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := q.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("qbittorrent %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("qbittorrent %s: read: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("qbittorrent %s: HTTP %s: %.200s", path, resp.Status, b)
	}
	return b, nil
}

func (q *qbittorrent) ready(ctx context.Context) error {
	q.mu.Lock()
	added := q.added
	q.mu.Unlock()
	if !added {
		if _, err := q.do(ctx, http.MethodGet, "/app/version", "", nil); err != nil {
			return err
		}
		tf, err := os.ReadFile(q.torrent)
		if err != nil {
			return fmt.Errorf("qbittorrent: read torrent: %w", err)
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, err := mw.CreateFormFile("torrents", filepath.Base(q.torrent))
		if err != nil {
			return fmt.Errorf("qbittorrent: form: %w", err)
		}
		if _, err := fw.Write(tf); err != nil {
			return fmt.Errorf("qbittorrent: form: %w", err)
		}
		for k, v := range map[string]string{"savepath": q.dataDir, "paused": "false", "autoTMM": "false",
			"skip_checking": "false", "contentLayout": "Original"} {
			if err := mw.WriteField(k, v); err != nil {
				return fmt.Errorf("qbittorrent: form: %w", err)
			}
		}
		if err := mw.Close(); err != nil {
			return fmt.Errorf("qbittorrent: form: %w", err)
		}
		b, err := q.do(ctx, http.MethodPost, "/torrents/add", mw.FormDataContentType(), body.Bytes())
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(b)); s != "Ok." {
			return fmt.Errorf("qbittorrent: add torrent: %q", s)
		}
		q.mu.Lock()
		q.added = true
		q.mu.Unlock()
	}
	// The add is asynchronous: ready once the torrent is listed.
	_, err := q.stats(ctx)
	return err
}

func (q *qbittorrent) stats(ctx context.Context) (Stats, error) {
	b, err := q.do(ctx, http.MethodGet, "/torrents/info?hashes="+q.hash, "", nil)
	if err != nil {
		return Stats{}, err
	}
	return decodeQBittorrent(b)
}

// decodeQBittorrent decodes a /api/v2/torrents/info reply for one torrent.
func decodeQBittorrent(b []byte) (Stats, error) {
	var r []struct {
		State      string  `json:"state"`
		Progress   float64 `json:"progress"`
		Uploaded   int64   `json:"uploaded"`
		Downloaded int64   `json:"downloaded"`
		AmountLeft int64   `json:"amount_left"`
		Size       int64   `json:"size"`
		NumSeeds   int     `json:"num_seeds"`
		NumLeechs  int     `json:"num_leechs"`
		UpSpeed    int64   `json:"upspeed"`
		DLSpeed    int64   `json:"dlspeed"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Stats{}, fmt.Errorf("decode torrents/info: %w", err)
	}
	if len(r) != 1 {
		return Stats{}, fmt.Errorf("torrents/info: %d torrents, want 1", len(r))
	}
	x := r[0]
	st := Stats{
		Uploaded:     x.Uploaded,
		Downloaded:   x.Downloaded,
		Size:         x.Size,
		Left:         x.AmountLeft,
		Progress:     x.Progress,
		NumPeers:     x.NumSeeds + x.NumLeechs,
		UploadRate:   x.UpSpeed,
		DownloadRate: x.DLSpeed,
		State:        x.State,
	}
	switch x.State {
	case "checkingUP", "checkingDL", "checkingResumeData", "queuedForChecking":
		st.Checking = true
	case "uploading", "stalledUP", "forcedUP", "queuedUP":
		st.Seeding = x.AmountLeft == 0 && x.Progress == 1
	case "error", "missingFiles", "unknown":
		st.Error = x.State
	}
	return st, nil
}

// stop: qBittorrent shuts down gracefully on SIGTERM, announcing 'stopped'
// (libtorrent's stop_tracker_timeout bounds that).
func (q *qbittorrent) stop(ctx context.Context) error {
	if err := q.p.signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("qbittorrent: SIGTERM: %w", err)
	}
	return nil
}
