package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/cheat"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// Scenario is one lab run, read from a JSON file in lab/scenarios. Unknown
// fields are an error.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// PayloadMiB is the size of the torrent's one file; PieceKiB its piece
	// length.
	PayloadMiB int `json:"payload_mib"`
	PieceKiB   int `json:"piece_kib"`
	// Duration of the audit (Go duration, e.g. "100s"). Leave a quiet phase
	// after the leechers finish: seeders are probed exactly only when no one
	// else downloads from them.
	Duration Duration `json:"duration"`
	// SnapshotInterval and ProbeInterval are the auditor's
	// --snapshot-interval and --probe-interval; ProbeBytes its --probe-bytes
	// (default "2MiB"); MaxAuditorRate its --max-auditor-rate (default: the
	// auditor's own default).
	SnapshotInterval Duration `json:"snapshot_interval"`
	ProbeInterval    Duration `json:"probe_interval"`
	ProbeBytes       string   `json:"probe_bytes,omitempty"`
	MaxAuditorRate   string   `json:"max_auditor_rate,omitempty"`
	// AuditorArgs are more `swarmaudit audit` flags ("--no-watch", ...);
	// not those the lab sets itself.
	AuditorArgs []string `json:"auditor_args,omitempty"`
	// Opentracker adds an opentracker on its own host as the torrent's
	// second tier, after the auditor's embedded tracker: the clients that
	// announce to every tier (Transmission, qBittorrent) also announce to
	// it, and the auditor discovers peers through it and checks its scrape
	// counts against the wire.
	Opentracker bool `json:"opentracker,omitempty"`
	// LeechStartDelay is how long after the seeders the leechers start
	// (default 0); CheatStartDelay the same for the cheaters.
	LeechStartDelay Duration `json:"leech_start_delay,omitempty"`
	CheatStartDelay Duration `json:"cheat_start_delay,omitempty"`
	// LeaveBeforeEnd stops the clients, then the cheaters, gracefully this
	// long before the audit ends, so that their 'stopped' announces carry
	// their final counters to the audit: libtorrent-based clients announce
	// at most every 5 minutes (min_announce_interval), so in a scenario of
	// a few minutes they would otherwise report once.
	LeaveBeforeEnd Duration `json:"leave_before_end,omitempty"`

	Clients  []ClientSpec  `json:"clients"`
	Cheaters []CheaterSpec `json:"cheaters,omitempty"`
}

// ClientSpec is one real client on its own lab host.
type ClientSpec struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`       // transmission, qbittorrent, libtorrent, aria2
	Role       string `json:"role"`       // seed or leech
	Encryption string `json:"encryption"` // required, preferred, disabled
	// UpKiB and DownKiB are tc caps on the host's link in KiB/s of
	// Ethernet frames (0: uncapped).
	UpKiB   int `json:"up_kib"`
	DownKiB int `json:"down_kib"`
	// ProxyFactor > 0 makes the client announce through a ratio-multiplying
	// proxy (cheat.StartProxy) that multiplies its reported upload by it:
	// the client is then a cheater.
	ProxyFactor float64 `json:"proxy_factor,omitempty"`
	// Proxy rewrites more of the client's announces through the same
	// proxy (cheat.Rewrite: hide_download, download_coupled, left_zero);
	// its upload factor, if set, is proxy_factor's.
	Proxy *cheat.Rewrite `json:"proxy,omitempty"`
	// Transport is what a libtorrent client speaks to peers: "tcp" (the
	// default), "utp" (uTP only, BEP 29) or "both".
	Transport string `json:"transport,omitempty"`
	// NAT puts a libtorrent client behind a NAT that lets nobody in
	// (labnet.AddNATHost): the auditor reaches it only when it connects
	// to the auditor, or through a hole a relay punches (BEP 55).
	NAT bool `json:"nat,omitempty"`
}

// Rewrite is what the client's proxy does to its announces (inactive:
// the client announces directly).
func (c ClientSpec) Rewrite() cheat.Rewrite {
	var rw cheat.Rewrite
	if c.Proxy != nil {
		rw = *c.Proxy
	}
	rw.Upload = c.ProxyFactor
	return rw
}

// CheaterSpec is one fake announcer (package cheat) on its own lab host.
type CheaterSpec struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // ghost, mute, no_bitfield, leecher_follower, flash_session
	// RateKiB is the upload rate it claims, KiB/s.
	RateKiB int `json:"rate_kib"`
}

// Cheater reports whether the client's truth is "cheater".
func (c ClientSpec) Cheater() bool { return c.Rewrite().Active() }

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// UnmarshalJSON reads "90s", "2m30s" and the like.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// hostNameRE is what labnet accepts for a host name, minus the auditor's.
var hostNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Bounds on scenarios: a lab run must stay bounded and fit the lab subnet.
const (
	maxHosts     = 40
	maxPayload   = 1024 // MiB
	maxDuration  = 30 * time.Minute
	minDuration  = 20 * time.Second
	auditorName  = "aud"
	trackerName  = "otracker"
	defaultProbe = "2MiB"
)

// labAuditorFlags are the audit flags the lab sets (startAuditor).
var labAuditorFlags = []string{"torrent", "tracker-listen", "duration", "db", "json-out", "html-out", "no-dht", "no-trackers",
	"snapshot-interval", "probe-interval", "probe-bytes", "max-auditor-rate"}

// ParseScenario reads and validates one scenario. Unknown fields, trailing
// data and invalid values are errors.
func ParseScenario(r io.Reader) (*Scenario, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("parse scenario: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse scenario: data after the JSON object")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadScenario reads a scenario by path, or by name from dir
// (dir/NAME.json).
func LoadScenario(dir, nameOrPath string) (*Scenario, error) {
	path := nameOrPath
	if !strings.ContainsRune(nameOrPath, os.PathSeparator) && !strings.HasSuffix(nameOrPath, ".json") {
		path = filepath.Join(dir, nameOrPath+".json")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", nameOrPath, err)
	}
	defer f.Close()
	s, err := ParseScenario(f)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return s, nil
}

// AllScenarios loads every dir/*.json, sorted by file name.
func AllScenarios(dir string) ([]*Scenario, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list scenarios: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no scenarios in %s", dir)
	}
	slices.Sort(paths)
	var out []*Scenario
	for _, p := range paths {
		s, err := LoadScenario(dir, p)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Validate checks every field; the error names the first bad one.
func (s *Scenario) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("scenario %q: "+format, append([]any{s.Name}, a...)...)
	}
	if !hostNameRE.MatchString(s.Name) {
		return bad("name: want 1-32 characters [a-z0-9_-]")
	}
	if s.PayloadMiB < 1 || s.PayloadMiB > maxPayload {
		return bad("payload_mib %d: want 1..%d", s.PayloadMiB, maxPayload)
	}
	if s.PieceKiB < 16 || s.PieceKiB > 16384 || s.PieceKiB&(s.PieceKiB-1) != 0 {
		return bad("piece_kib %d: want a power of two in 16..16384", s.PieceKiB)
	}
	if d := s.Duration.D(); d < minDuration || d > maxDuration {
		return bad("duration %v: want %v..%v", d, minDuration, maxDuration)
	}
	if s.SnapshotInterval <= 0 || s.ProbeInterval <= 0 {
		return bad("snapshot_interval and probe_interval are required and positive")
	}
	// A probe_interval beyond the duration is allowed: every peer gets the
	// one bandwidth probe taken at first sight, as in the first minutes of a
	// default audit (10 min).
	if s.SnapshotInterval.D() > s.Duration.D() {
		return bad("snapshot_interval must not exceed duration")
	}
	if s.LeechStartDelay < 0 || s.CheatStartDelay < 0 ||
		s.LeechStartDelay.D() >= s.Duration.D() || s.CheatStartDelay.D() >= s.Duration.D() {
		return bad("start delays must be in [0, duration)")
	}
	if s.LeaveBeforeEnd < 0 || s.LeaveBeforeEnd.D()+max(s.LeechStartDelay.D(), s.CheatStartDelay.D()) >= s.Duration.D() {
		return bad("leave_before_end must be >= 0 and leave time after the last start")
	}
	for _, a := range s.AuditorArgs {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || slices.Contains(labAuditorFlags, name) {
			return bad("auditor_args: %q: want a --flag the lab does not set itself (it sets %v)", a, labAuditorFlags)
		}
	}
	if len(s.Clients) == 0 {
		return bad("no clients")
	}
	if n := len(s.Clients) + len(s.Cheaters) + 2; n > maxHosts {
		return bad("%d hosts: at most %d", n, maxHosts)
	}
	names := map[string]bool{auditorName: true, trackerName: true}
	seeds := 0
	for i, c := range s.Clients {
		if !hostNameRE.MatchString(c.Name) || names[c.Name] {
			return bad("clients[%d]: name %q: want a unique name of 1-32 characters [a-z0-9_-], not %q or %q", i, c.Name, auditorName, trackerName)
		}
		names[c.Name] = true
		if !slices.Contains(testclients.Kinds(), testclients.Kind(c.Kind)) {
			return bad("client %s: kind %q: want one of %v", c.Name, c.Kind, testclients.Kinds())
		}
		if c.Role != "seed" && c.Role != "leech" {
			return bad("client %s: role %q: want seed or leech", c.Name, c.Role)
		}
		if c.Role == "seed" {
			seeds++
		}
		if !slices.Contains(testclients.Encryptions(), testclients.Encryption(c.Encryption)) {
			return bad("client %s: encryption %q: want one of %v", c.Name, c.Encryption, testclients.Encryptions())
		}
		if c.UpKiB < 0 || c.DownKiB < 0 || c.UpKiB > 1<<20 || c.DownKiB > 1<<20 {
			return bad("client %s: caps must be in 0..%d KiB/s", c.Name, 1<<20)
		}
		if c.ProxyFactor < 0 || (c.ProxyFactor > 0 && c.ProxyFactor <= 1) || c.ProxyFactor > 1000 {
			return bad("client %s: proxy_factor %v: want 0 (none) or in (1, 1000]", c.Name, c.ProxyFactor)
		}
		if !slices.Contains([]string{"", "tcp", "utp", "both"}, c.Transport) {
			return bad("client %s: transport %q: want tcp, utp or both", c.Name, c.Transport)
		}
		if (c.Transport != "" && c.Transport != "tcp" || c.NAT) && c.Kind != string(testclients.Libtorrent) {
			return bad("client %s: transport and nat are for libtorrent clients (the others' APIs would sit behind the NAT)", c.Name)
		}
		if c.NAT && c.Rewrite().Active() {
			return bad("client %s: a client behind a NAT announces directly (its proxy would sit behind the NAT)", c.Name)
		}
		if c.Proxy != nil && (c.Proxy.Upload != 0 || c.Proxy.DownloadCoupled < 0 || c.Proxy.DownloadCoupled > 1000) {
			return bad("client %s: proxy: set the upload factor in proxy_factor; download_coupled in [0, 1000]", c.Name)
		}
	}
	if seeds == 0 {
		return bad("no seed: nothing would move")
	}
	for i, c := range s.Cheaters {
		if !hostNameRE.MatchString(c.Name) || names[c.Name] {
			return bad("cheaters[%d]: name %q: want a unique name of 1-32 characters [a-z0-9_-]", i, c.Name)
		}
		names[c.Name] = true
		if !slices.Contains(cheat.Kinds(), cheat.Kind(c.Kind)) {
			return bad("cheater %s: kind %q: want one of %v", c.Name, c.Kind, cheat.Kinds())
		}
		if c.RateKiB < 1 || c.RateKiB > 1<<20 {
			return bad("cheater %s: rate_kib %d: want 1..%d", c.Name, c.RateKiB, 1<<20)
		}
	}
	return nil
}

// probeBytes is the scenario's --probe-bytes.
func (s *Scenario) probeBytes() string {
	if s.ProbeBytes == "" {
		return defaultProbe
	}
	return s.ProbeBytes
}

// rewriteStr names what a proxy rewrites besides the upload factor.
func rewriteStr(rw cheat.Rewrite) string {
	var parts []string
	if rw.HideDownload {
		parts = append(parts, "downloaded=0")
	}
	if rw.DownloadCoupled > 0 {
		parts = append(parts, fmt.Sprintf("uploaded+=%g×downloaded", rw.DownloadCoupled))
	}
	if rw.LeftZero {
		parts = append(parts, "left=0")
	}
	return strings.Join(parts, ", ")
}
