package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// Lab network constants.
const (
	netPrefix    = "salab"
	peerPort     = 6881 // every client's BitTorrent port (one host each)
	trackerPort  = 6969 // the auditor's embedded tracker, HTTP and UDP
	payloadSeed  = 1
	launchTO     = 90 * time.Second // one client's start-up (hash check, readiness probe)
	auditGrace   = 2 * time.Minute  // the auditor's report writing after --duration
	setupBudget  = 3 * time.Minute  // everything before the audit's clock starts
	stopGrace    = 10 * time.Second
	samplePeriod = time.Second
)

// Options are what a run needs besides its scenario.
type Options struct {
	Dir  string // the run directory (created; kept afterwards)
	Bin  string // the swarmaudit binary
	Self string // this program, re-executed for the cheat helpers
	Log  *slog.Logger
}

// HostInfo is the truth about one lab host, written to hosts.json.
type HostInfo struct {
	Name       string  `json:"name"`
	IP         string  `json:"ip"`
	Port       int     `json:"port"`              // peer port (0 for the auditor)
	Role       string  `json:"role"`              // seed, leech, cheater, auditor, tracker
	Kind       string  `json:"kind"`              // client kind or cheat kind
	Encryption string  `json:"encryption"`        // clients only
	UpKiB      int     `json:"up_kib"`            // tc caps
	DownKiB    int     `json:"down_kib"`          //
	Proxy      float64 `json:"proxy_factor"`      // announces through a ×factor proxy
	Rewrite    string  `json:"rewrite,omitempty"` // what else its proxy rewrites
	Cheater    bool    `json:"cheater"`
	// Transport and NAT: the client's (ClientSpec); IP is then the
	// address the lab sees it as, its router's.
	Transport string `json:"transport,omitempty"`
	NAT       bool   `json:"nat,omitempty"`
}

// Client reports whether the host runs a real client.
func (h HostInfo) Client() bool { return h.Role == "seed" || h.Role == "leech" }

// RunInfo describes a finished run, written to run.json.
type RunInfo struct {
	Scenario string    `json:"scenario"`
	Dir      string    `json:"dir"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended"`
	// LeftAt is when the clients and cheaters were asked to leave
	// (scenario leave_before_end): a client that exits after it has not
	// crashed. Zero when they stayed to the end.
	LeftAt      time.Time  `json:"left_at,omitzero"`
	Size        int64      `json:"size"`
	PieceLength int64      `json:"piece_length"`
	Hosts       []HostInfo `json:"hosts"`
	// The auditor's intervals (zero in run directories from before they
	// were recorded).
	SnapshotInterval time.Duration `json:"snapshot_interval"`
	ProbeInterval    time.Duration `json:"probe_interval"`
	// Opentracker is its announce URL when the scenario has one.
	Opentracker string `json:"opentracker,omitempty"`
}

// Files of a run directory.
const (
	reportFile  = "report.json"
	truthFile   = "truth.jsonl"
	runFile     = "run.json"
	torrentFile = "swarm.torrent"
)

// running is what a run started and must stop.
type running struct {
	mu       sync.Mutex
	clients  map[string]*testclients.Client
	trackers []*testclients.Tracker
	procs    []*proc
	hosts    map[string]*labnet.Host
	infos    []HostInfo
	auditor  *proc
	log      *slog.Logger
	stopOnce sync.Once
}

func (r *running) addClient(name string, c *testclients.Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clients[name] = c
}

func (r *running) addProc(p *proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

// leave stops the clients and then the cheaters gracefully, concurrently
// within each group, so that their 'stopped' announces (through their
// proxies, which stay up) reach the tracker while the audit still runs.
func (r *running) leave() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var wg sync.WaitGroup
	for name, c := range r.clients {
		wg.Go(func() {
			c.Stop()
			r.log.Debug("client left", "host", name)
		})
	}
	wg.Wait()
	for _, p := range r.procs {
		if strings.HasPrefix(p.name, "cheater ") {
			wg.Go(func() { p.stop(syscall.SIGTERM, stopGrace) })
		}
	}
	wg.Wait()
}

// stopAll stops every client and helper the run started, concurrently;
// bounded by testclients' stop bound (about 15 s).
func (r *running) stopAll() {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		var wg sync.WaitGroup
		for name, c := range r.clients {
			wg.Go(func() {
				c.Stop()
				r.log.Debug("client stopped", "host", name)
			})
		}
		for _, p := range r.procs {
			wg.Go(func() { p.stop(syscall.SIGTERM, stopGrace) })
		}
		wg.Wait()
		// trackers last: the clients' stopped announces go to them
		for _, t := range r.trackers {
			t.Stop()
		}
	})
}

// Run runs one scenario: it builds the lab network, starts the auditor, the
// clients and the cheaters, samples the truth every second until the audit
// ends, stops everything it started and removes the network (also on error
// and when ctx is cancelled). The run directory keeps the logs, the report,
// the truth samples and run.json.
func Run(ctx context.Context, sc *Scenario, o Options) (info *RunInfo, err error) {
	log := o.Log
	ctx, cancel := context.WithTimeout(ctx, setupBudget+sc.Duration.D()+auditGrace+time.Minute)
	defer cancel()
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	unlock, err := lockLab()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := cleanLeftovers(ctx, log); err != nil {
		return nil, err
	}
	nw, err := labnet.Create(ctx, labnet.Config{Prefix: netPrefix})
	if err != nil {
		return nil, fmt.Errorf("lab network: %w", err)
	}
	defer func() {
		if cerr := nw.Close(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close lab network: %w", cerr))
		}
	}()
	rn := &running{clients: map[string]*testclients.Client{}, hosts: map[string]*labnet.Host{}, log: log}
	defer rn.stopAll()

	if err := addHosts(ctx, nw, sc, rn); err != nil {
		return nil, err
	}
	aud := rn.hosts[auditorName]
	size := int64(sc.PayloadMiB) << 20
	plen := int64(sc.PieceKiB) << 10
	payload, err := testclients.WritePayload(filepath.Join(o.Dir, "payload"), size, payloadSeed)
	if err != nil {
		return nil, err
	}
	announce := fmt.Sprintf("http://%s/announce", net.JoinHostPort(aud.IP.String(), strconv.Itoa(trackerPort)))
	tiers, otURL := []string{announce}, ""
	if sc.Opentracker {
		ot, err := startOpentracker(ctx, rn, o)
		if err != nil {
			return nil, err
		}
		tiers, otURL = append(tiers, ot.HTTP), ot.HTTP
	}
	torrent, ih, err := testclients.CreateTorrent(payload, plen, tiers, true)
	if err != nil {
		return nil, err
	}
	// kept with the run (the payload directory is not): `-rejudge` needs it
	if err := linkOrCopy(torrent, filepath.Join(o.Dir, torrentFile)); err != nil {
		return nil, err
	}
	for _, ot := range rn.trackers {
		if err := ot.AllowHashes(ctx, ih); err != nil {
			return nil, fmt.Errorf("opentracker: %w", err)
		}
	}
	info = &RunInfo{Scenario: sc.Name, Dir: o.Dir, Size: size, PieceLength: plen, Hosts: rn.infos,
		SnapshotInterval: sc.SnapshotInterval.D(), ProbeInterval: sc.ProbeInterval.D(), Opentracker: otURL}

	// ground truth from now on: every host's link counters, every client's API
	sampler, err := startSampler(filepath.Join(o.Dir, truthFile), rn, log)
	if err != nil {
		return nil, err
	}
	defer sampler.stop()

	info.Started = time.Now()
	auditor, err := startAuditor(aud, sc, o, torrent, announce)
	if err != nil {
		return nil, err
	}
	rn.auditor = auditor
	rn.addProc(auditor)
	if err := waitTCP(ctx, net.JoinHostPort(aud.IP.String(), strconv.Itoa(trackerPort)), 20*time.Second); err != nil {
		return nil, fmt.Errorf("auditor's tracker: %w (see %s)", err, filepath.Join(o.Dir, "auditor.log"))
	}
	log.Info("auditor up", "tracker", announce, "duration", sc.Duration.D())

	if err := startClients(ctx, sc, o, rn, payload, torrent, plen, announce, "seed"); err != nil {
		return info, err
	}
	if err := sleepCtx(ctx, sc.LeechStartDelay.D()); err != nil {
		return info, err
	}
	if err := startClients(ctx, sc, o, rn, payload, torrent, plen, announce, "leech"); err != nil {
		return info, err
	}
	if d := sc.CheatStartDelay.D() - sc.LeechStartDelay.D(); d > 0 {
		if err := sleepCtx(ctx, d); err != nil {
			return info, err
		}
	}
	if err := startCheaters(sc, o, rn, announce, ih, size, plen); err != nil {
		return info, err
	}
	log.Info("swarm up; waiting for the audit to end", "scenario", sc.Name,
		"ends_in", time.Until(info.Started.Add(sc.Duration.D())).Round(time.Second))

	if lv := sc.LeaveBeforeEnd.D(); lv > 0 {
		if err := sleepCtx(ctx, time.Until(info.Started.Add(sc.Duration.D()-lv))); err != nil {
			return info, err
		}
		log.Info("clients and cheaters leave the swarm", "scenario", sc.Name, "before_end", lv)
		info.LeftAt = time.Now()
		rn.leave()
	}
	wctx, wcancel := context.WithDeadline(ctx, info.Started.Add(sc.Duration.D()+auditGrace))
	werr := flaggedIsDone(auditor.wait(wctx))
	wcancel()
	info.Ended = time.Now()
	sampler.stop()
	rn.stopAll()
	if werr != nil {
		return info, fmt.Errorf("auditor: %w (see %s)", werr, filepath.Join(o.Dir, "auditor.log"))
	}
	if err := writeJSON(filepath.Join(o.Dir, runFile), info); err != nil {
		return info, err
	}
	return info, nil
}

// addHosts makes the auditor's host and one per client and cheater.
func addHosts(ctx context.Context, nw *labnet.Net, sc *Scenario, rn *running) error {
	add := func(hi HostInfo) error {
		addHost := nw.AddHost
		if hi.NAT {
			addHost = nw.AddNATHost
		}
		h, err := addHost(ctx, hi.Name, labnet.Caps{UpKiB: hi.UpKiB, DownKiB: hi.DownKiB})
		if err != nil {
			return err
		}
		hi.IP = h.Public.String()
		rn.hosts[hi.Name] = h
		rn.infos = append(rn.infos, hi)
		return nil
	}
	if err := add(HostInfo{Name: auditorName, Role: "auditor", Kind: "swarmaudit"}); err != nil {
		return err
	}
	if sc.Opentracker {
		if err := add(HostInfo{Name: trackerName, Port: trackerPort, Role: "tracker", Kind: "opentracker"}); err != nil {
			return err
		}
	}
	for _, c := range sc.Clients {
		if err := add(HostInfo{Name: c.Name, Port: peerPort, Role: c.Role, Kind: c.Kind, Encryption: c.Encryption,
			UpKiB: c.UpKiB, DownKiB: c.DownKiB, Proxy: c.ProxyFactor, Rewrite: rewriteStr(c.Rewrite()), Cheater: c.Cheater(),
			Transport: c.Transport, NAT: c.NAT}); err != nil {
			return err
		}
	}
	for _, c := range sc.Cheaters {
		if err := add(HostInfo{Name: c.Name, Role: "cheater", Kind: c.Kind, Cheater: true}); err != nil {
			return err
		}
	}
	return nil
}

// startOpentracker starts opentracker on the tracker host (HTTP and UDP on
// trackerPort); its whitelist gets the torrent's hash once it exists.
func startOpentracker(ctx context.Context, rn *running, o Options) (*testclients.Tracker, error) {
	h := rn.hosts[trackerName]
	ot, err := testclients.LaunchOpentracker(ctx, testclients.OpentrackerOptions{
		IP: h.IP.String(), Port: trackerPort, Netns: h.Netns, Dir: filepath.Join(o.Dir, "opentracker"),
	})
	if err != nil {
		return nil, err
	}
	rn.mu.Lock()
	rn.trackers = append(rn.trackers, ot)
	rn.mu.Unlock()
	return ot, nil
}

// exitFlagged is swarmaudit's exit code when the audit flagged peers
// (README.md, "Exit codes"): a lab run with cheaters ends that way.
const exitFlagged = 3

// flaggedIsDone maps swarmaudit's "peers flagged" exit to success.
func flaggedIsDone(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == exitFlagged {
		return nil
	}
	return err
}

// startAuditor starts `swarmaudit audit` in the auditor's host.
func startAuditor(aud *labnet.Host, sc *Scenario, o Options, torrent, announce string) (*proc, error) {
	args := []string{o.Bin, "audit",
		"--torrent", torrent,
		"--tracker-listen", net.JoinHostPort(aud.IP.String(), strconv.Itoa(trackerPort)),
		"--duration", sc.Duration.D().String(),
		"--db", filepath.Join(o.Dir, "audit.db"),
		"--json-out", filepath.Join(o.Dir, reportFile),
		"--html-out", filepath.Join(o.Dir, "report.html"),
		"--no-dht",
		"--snapshot-interval", sc.SnapshotInterval.D().String(),
		"--probe-interval", sc.ProbeInterval.D().String(),
		"--probe-bytes", sc.probeBytes(),
	}
	if !sc.Opentracker {
		// the embedded tracker is the only one (and the audit does not
		// announce to its own)
		args = append(args, "--no-trackers")
	}
	if sc.MaxAuditorRate != "" {
		args = append(args, "--max-auditor-rate", sc.MaxAuditorRate)
	}
	args = append(args, sc.AuditorArgs...)
	if err := os.WriteFile(filepath.Join(o.Dir, "auditor.cmd"), []byte(fmt.Sprintf("%q\n", args)), 0o644); err != nil {
		return nil, fmt.Errorf("auditor: %w", err)
	}
	return startProc(aud, "auditor", filepath.Join(o.Dir, "auditor.log"), nil, args...)
}

// startClients launches the clients of one role concurrently. Seeds get a
// hard link of the payload and are ready (seeding, accepting peers) when
// this returns. A proxied client first gets its proxy and a .torrent whose
// tracker is the proxy.
func startClients(ctx context.Context, sc *Scenario, o Options, rn *running, payload, torrent string, plen int64, announce, role string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(sc.Clients))
	for i, c := range sc.Clients {
		if c.Role != role {
			continue
		}
		wg.Go(func() { errs[i] = startClient(ctx, c, o, rn, payload, torrent, plen, announce) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func startClient(ctx context.Context, c ClientSpec, o Options, rn *running, payload, torrent string, plen int64, announce string) error {
	h := rn.hosts[c.Name]
	dir := filepath.Join(o.Dir, "clients", c.Name)
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("client %s: %w", c.Name, err)
	}
	if c.Role == "seed" {
		if err := linkOrCopy(payload, filepath.Join(dataDir, filepath.Base(payload))); err != nil {
			return fmt.Errorf("client %s: payload: %w", c.Name, err)
		}
	}
	if rw := c.Rewrite(); rw.Active() {
		spec, err := json.Marshal(rw)
		if err != nil {
			return fmt.Errorf("client %s: %w", c.Name, err)
		}
		p, ready, err := startHelper(h, o.Self, "proxy "+c.Name, filepath.Join(o.Dir, "proxy-"+c.Name+".log"),
			"proxy", "-ip", h.IP.String(), "-upstream", announce, "-rewrite", string(spec))
		if err != nil {
			return fmt.Errorf("client %s: %w", c.Name, err)
		}
		rn.addProc(p)
		// its own .torrent, whose tracker is the proxy; it differs only
		// outside the info dictionary (same info hash)
		if torrent, _, err = testclients.CreateTorrent(payload, plen, []string{ready["url"]}, true); err != nil {
			return fmt.Errorf("client %s: %w", c.Name, err)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, launchTO)
	defer cancel()
	cl, err := testclients.Launch(lctx, testclients.Options{
		Kind: testclients.Kind(c.Kind), Encryption: testclients.Encryption(c.Encryption),
		TorrentFile: torrent, Dir: dir, DataDir: dataDir,
		Netns: h.Netns, IP: h.IP.String(), Port: peerPort, Seed: c.Role == "seed",
		UTP: c.Transport == "both", UTPOnly: c.Transport == "utp",
	})
	if err != nil {
		return fmt.Errorf("client %s: %w", c.Name, err)
	}
	rn.addClient(c.Name, cl)
	rn.log.Info("client up", "host", c.Name, "kind", c.Kind, "role", c.Role, "enc", c.Encryption,
		"addr", cl.Addr, "up_kib", c.UpKiB, "proxy", c.ProxyFactor)
	return nil
}

// startCheaters starts one cheat helper per cheater host.
func startCheaters(sc *Scenario, o Options, rn *running, announce string, ih [20]byte, size, plen int64) error {
	for i, c := range sc.Cheaters {
		h := rn.hosts[c.Name]
		p, ready, err := startHelper(h, o.Self, "cheater "+c.Name, filepath.Join(o.Dir, "cheat-"+c.Name+".log"),
			"cheat", "-kind", c.Kind, "-ip", h.IP.String(), "-announce", announce,
			"-infohash", hex.EncodeToString(ih[:]), "-size", strconv.FormatInt(size, 10),
			"-piece-length", strconv.FormatInt(plen, 10),
			"-rate", strconv.Itoa(c.RateKiB*1024), "-seed", strconv.Itoa(100+i),
			"-life", (sc.Duration.D() + auditGrace).String())
		if err != nil {
			return fmt.Errorf("cheater %s: %w", c.Name, err)
		}
		rn.addProc(p)
		rn.log.Info("cheater up", "host", c.Name, "kind", c.Kind, "addr", ready["addr"], "rate_kib", c.RateKiB)
		rn.mu.Lock()
		for j := range rn.infos {
			if rn.infos[j].Name == c.Name {
				if _, port, err := net.SplitHostPort(ready["addr"]); err == nil {
					rn.infos[j].Port, _ = strconv.Atoi(port)
				}
			}
		}
		rn.mu.Unlock()
	}
	return nil
}

// linkOrCopy hard-links src to dst, or copies it across file systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// waitTCP waits until addr accepts a TCP connection, at most d.
func waitTCP(ctx context.Context, addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var dl net.Dialer
	for {
		c, err := dl.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting after %v: %w", addr, d, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
