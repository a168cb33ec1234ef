package testclients

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

//go:embed ltclient.py
var ltclientScript []byte

// libtorrent drives the embedded ltclient.py over its stdin/stdout: commands
// in, one JSON object per line out (see the script's doc string).
type libtorrent struct {
	stdin *os.File
	log   io.Writer
	p     *process

	reqMu sync.Mutex // one status request at a time
	seq   int

	mu       sync.Mutex
	readyCh  chan struct{} // closed on {"type":"ready"}
	fatal    string
	replies  chan json.RawMessage
	stopOnce sync.Once
}

type ltConfig struct {
	Torrent  string   `json:"torrent"`
	Save     string   `json:"save"`
	IP       string   `json:"ip"`
	Port     int      `json:"port"`
	Enc      string   `json:"enc"`
	UpKiB    int      `json:"up_kib"`
	DownKiB  int      `json:"down_kib"`
	PEX      bool     `json:"pex"`
	DHT      bool     `json:"dht"`
	DHTNodes []string `json:"dht_nodes"`
	UTP      bool     `json:"utp"`
	UTPOnly  bool     `json:"utp_only"`
	NoTCPIn  bool     `json:"no_tcp_in"`
	LSD      bool     `json:"lsd"`
}

func (c *Client) prepareLibtorrent(o Options) (*exec.Cmd, error) {
	script := filepath.Join(c.Dir, "ltclient.py")
	if err := os.WriteFile(script, ltclientScript, 0o644); err != nil {
		return nil, fmt.Errorf("write script: %w", err)
	}
	cfg := ltConfig{
		Torrent: o.TorrentFile, Save: o.DataDir, IP: o.IP, Port: int(c.Addr.Port()), Enc: string(o.Encryption),
		UpKiB: o.UploadLimitKiB, DownKiB: o.DownloadLimitKiB, PEX: o.PEX, DHT: o.DHT, UTP: o.UTP, UTPOnly: o.UTPOnly, NoTCPIn: o.NoIncomingTCP, LSD: o.LSD,
	}
	for _, n := range o.DHTNodes {
		cfg.DHTNodes = append(cfg.DHTNodes, n.String())
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	confPath := filepath.Join(c.Dir, "ltclient.json")
	if err := os.WriteFile(confPath, b, 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}

	logPath := filepath.Join(c.Dir, "client.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		logf.Close()
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd := exec.Command(pythonPath, "-u", script, confPath)
	cmd.Stdin = inR
	cmd.Stdout = outW
	cmd.Stderr = logf
	lt := &libtorrent{
		stdin:   inW,
		log:     &lockedWriter{w: logf},
		p:       c.proc,
		readyCh: make(chan struct{}),
		replies: make(chan json.RawMessage, 1),
	}
	c.api = lt
	// The child holds its own copies of inR and outW once started; the parent
	// closes its copies then, so the reader sees EOF when the child is gone.
	started := false
	c.proc.closers = append(c.proc.closers, func() {
		if !started {
			inR.Close()
			outW.Close()
			outR.Close()
		}
		inW.Close()
		logf.Close()
	})
	c.proc.afterStart = func() {
		started = true
		inR.Close()
		outW.Close()
		go lt.readLoop(outR)
	}
	return cmd, nil
}

// readLoop reads the script's stdout until EOF: log lines go to the log,
// status replies to the waiting Stats call. Lines are bounded (1 MiB): past
// a longer one the rest is discarded.
func (lt *libtorrent) readLoop(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var m struct {
			Type string `json:"type"`
			Msg  string `json:"msg"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			fmt.Fprintf(lt.log, "stdout: %s\n", line)
			continue
		}
		switch m.Type {
		case "ready":
			lt.mu.Lock()
			select {
			case <-lt.readyCh:
			default:
				close(lt.readyCh)
			}
			lt.mu.Unlock()
		case "fatal":
			lt.mu.Lock()
			lt.fatal = m.Msg
			lt.mu.Unlock()
			fmt.Fprintf(lt.log, "fatal: %s\n", m.Msg)
		case "status":
			// Replace an unread stale reply rather than block the reader.
			reply := json.RawMessage(append([]byte(nil), line...))
			select {
			case lt.replies <- reply:
			default:
				select {
				case <-lt.replies:
				default:
				}
				lt.replies <- reply
			}
		default:
			fmt.Fprintf(lt.log, "%s\n", m.Msg)
		}
	}
	if err := sc.Err(); err != nil {
		// Keep draining: a child blocked on a full pipe would hang.
		fmt.Fprintf(lt.log, "testclients: reading stdout: %v; discarding the rest\n", err)
		io.Copy(io.Discard, r)
	}
}

var errLibtorrentFatal = errors.New("libtorrent client failed")

func (lt *libtorrent) ready(ctx context.Context) error {
	select {
	case <-lt.readyCh:
		return nil
	default:
	}
	lt.mu.Lock()
	fatal := lt.fatal
	lt.mu.Unlock()
	if fatal != "" {
		return fmt.Errorf("%w: %s", errLibtorrentFatal, fatal)
	}
	return errors.New("libtorrent: not listening yet")
}

func (lt *libtorrent) stats(ctx context.Context) (Stats, error) {
	lt.reqMu.Lock()
	defer lt.reqMu.Unlock()
	lt.seq++
	id := strconv.Itoa(lt.seq)
	if err := lt.send(ctx, "status "+id); err != nil {
		return Stats{}, fmt.Errorf("libtorrent: send status request: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return Stats{}, fmt.Errorf("libtorrent: status: %w", ctx.Err())
		case b := <-lt.replies:
			st, gotID, err := decodeLibtorrent(b)
			if gotID != id {
				continue // a late reply to an earlier, abandoned request
			}
			return st, err
		}
	}
}

// decodeLibtorrent decodes one status line of ltclient.py; it returns the
// request id even when the rest is unusable.
func decodeLibtorrent(b []byte) (Stats, string, error) {
	var r struct {
		ID              string  `json:"id"`
		State           string  `json:"state"`
		Progress        float64 `json:"progress"`
		IsSeeding       bool    `json:"is_seeding"`
		Paused          bool    `json:"paused"`
		Uploaded        int64   `json:"uploaded"`
		Downloaded      int64   `json:"downloaded"`
		TotalWanted     int64   `json:"total_wanted"`
		TotalWantedDone int64   `json:"total_wanted_done"`
		UpRate          int64   `json:"up_rate"`
		DownRate        int64   `json:"down_rate"`
		NumPeers        int     `json:"num_peers"`
		Error           string  `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Stats{}, r.ID, fmt.Errorf("decode status: %w", err)
	}
	if r.State == "" && r.Error != "" { // the script could not read the status
		return Stats{}, r.ID, fmt.Errorf("libtorrent: %s", r.Error)
	}
	st := Stats{
		Uploaded:     r.Uploaded,
		Downloaded:   r.Downloaded,
		Size:         r.TotalWanted,
		Left:         r.TotalWanted - r.TotalWantedDone,
		Progress:     r.Progress,
		Checking:     r.State == "checking_files" || r.State == "checking_resume_data",
		NumPeers:     r.NumPeers,
		UploadRate:   r.UpRate,
		DownloadRate: r.DownRate,
		State:        r.State,
		Error:        r.Error,
	}
	st.Seeding = r.IsSeeding && !r.Paused && st.Left == 0 && r.State == "seeding"
	return st, r.ID, nil
}

// stop asks the script to quit (it removes the torrent, which sends the
// 'stopped' announce, and waits up to 4 s for the answer); SIGTERM does the
// same if the pipe is gone.
func (lt *libtorrent) stop(ctx context.Context) error {
	var err error
	lt.stopOnce.Do(func() {
		if werr := lt.send(ctx, "quit"); werr != nil {
			slog.Debug("testclients: libtorrent quit command", "err", werr)
			if serr := lt.p.signal(syscall.SIGTERM); serr != nil {
				err = errors.Join(werr, fmt.Errorf("libtorrent: SIGTERM: %w", serr))
			}
		}
	})
	return err
}

// send writes one command line to the script's stdin, bounded by ctx (a
// stalled child cannot block the caller on a full pipe).
func (lt *libtorrent) send(ctx context.Context, cmd string) error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(requestTimeout)
	}
	if err := lt.stdin.SetWriteDeadline(dl); err != nil {
		return fmt.Errorf("libtorrent: %w", err)
	}
	if _, err := io.WriteString(lt.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("libtorrent: send %q: %w", cmd, err)
	}
	return nil
}

// lockedWriter serialises writes from the reader goroutine and the Go side.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
