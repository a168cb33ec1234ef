package testclients

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// aria2 drives aria2c 1.36 over its JSON-RPC interface. The torrent is
// given on the command line with a fixed GID, so the RPC calls can name it.
type aria2 struct {
	url  string
	http *http.Client
	gid  string
	p    *process
}

func (c *Client) prepareAria2(o Options) (*exec.Cmd, error) {
	// aria2 cannot bind its RPC to one address. --rpc-listen-all=false
	// makes it listen on localhost only: 127.0.0.1, whatever o.IP is. In a
	// namespace it listens on all of the namespace's addresses, so the root
	// namespace reaches it on o.IP.
	listenAll := o.Netns != ""
	// A GID is 16 hex digits; derive it from the infohash (never all zero).
	gidN := binary.BigEndian.Uint64(c.InfoHash[:8]) | 1
	gid := fmt.Sprintf("%016x", gidN)
	args := []string{
		"--no-conf=true",
		"--enable-rpc=true", "--rpc-listen-all=" + strconv.FormatBool(listenAll),
		"--rpc-listen-port=" + strconv.Itoa(int(c.APIAddr.Port())),
		"--listen-port=" + strconv.Itoa(int(c.Addr.Port())),
		"--interface=" + o.IP, "--disable-ipv6=true", "--async-dns=false",
		"--bt-enable-lpd=false", "--enable-dht6=false",
		"--enable-peer-exchange=" + strconv.FormatBool(o.PEX),
		"--dir=" + o.DataDir, "--gid=" + gid,
		"--check-integrity=true", "--bt-seed-unverified=false", "--bt-hash-check-seed=true",
		"--seed-ratio=0.0", "--bt-stop-timeout=0", "--bt-max-peers=55",
		"--max-overall-upload-limit=" + strconv.Itoa(o.UploadLimitKiB) + "K",
		"--max-overall-download-limit=" + strconv.Itoa(o.DownloadLimitKiB) + "K",
		"--file-allocation=none", "--auto-save-interval=0", "--summary-interval=0",
		"--enable-color=false", "--console-log-level=notice",
		"--log=" + filepath.Join(c.Dir, "aria2.log"), "--log-level=notice",
		// Stop when the test binary is gone, even without a cleanup.
		"--stop-with-process=" + strconv.Itoa(os.Getpid()),
	}
	if o.Encryption == EncRequired {
		args = append(args, "--bt-require-crypto=true", "--bt-min-crypto-level=arc4")
	} else {
		// aria2 cannot refuse MSE: "disabled" is the same as "preferred".
		args = append(args, "--bt-require-crypto=false", "--bt-min-crypto-level=plain")
	}
	if o.DHT {
		args = append(args, "--enable-dht=true", "--dht-listen-port="+strconv.Itoa(int(c.DHTAddr.Port())),
			"--dht-file-path="+filepath.Join(c.Dir, "dht.dat"))
		if len(o.DHTNodes) > 0 {
			args = append(args, "--dht-entry-point="+o.DHTNodes[0].String())
		}
	} else {
		args = append(args, "--enable-dht=false")
	}
	args = append(args, o.TorrentFile)
	c.proc.logFiles = append(c.proc.logFiles, filepath.Join(c.Dir, "aria2.log"))
	c.api = &aria2{
		url:  "http://" + c.APIAddr.String() + "/jsonrpc",
		http: newHTTPClient(),
		gid:  gid,
		p:    c.proc,
	}
	return exec.Command("aria2c", args...), nil
}

var errAria2RPC = errors.New("aria2 RPC error")

func (a *aria2) call(ctx context.Context, method string, params []any, out any) error {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "t", "method": method, "params": params})
	if err != nil {
		return fmt.Errorf("aria2 %s: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("aria2 %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("aria2 %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if err != nil {
		return fmt.Errorf("aria2 %s: read: %w", method, err)
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("aria2 %s: HTTP %s: decode: %w", method, resp.Status, err)
	}
	if r.Error != nil {
		return fmt.Errorf("aria2 %s: %w %d: %s", method, errAria2RPC, r.Error.Code, r.Error.Message)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			return fmt.Errorf("aria2 %s: decode result: %w", method, err)
		}
	}
	return nil
}

func (a *aria2) ready(ctx context.Context) error {
	_, err := a.stats(ctx)
	return err
}

var aria2Keys = []string{"status", "totalLength", "completedLength", "uploadLength", "downloadSpeed",
	"uploadSpeed", "connections", "seeder", "verifiedLength", "verifyIntegrityPending", "errorCode",
	"errorMessage", "infoHash"}

func (a *aria2) stats(ctx context.Context) (Stats, error) {
	var raw json.RawMessage
	if err := a.call(ctx, "aria2.tellStatus", []any{a.gid, aria2Keys}, &raw); err != nil {
		return Stats{}, err
	}
	return decodeAria2(raw)
}

// decodeAria2 decodes an aria2.tellStatus result (aria2 sends numbers as strings).
func decodeAria2(b []byte) (Stats, error) {
	var r struct {
		Status                 string `json:"status"`
		TotalLength            string `json:"totalLength"`
		CompletedLength        string `json:"completedLength"`
		UploadLength           string `json:"uploadLength"`
		DownloadSpeed          string `json:"downloadSpeed"`
		UploadSpeed            string `json:"uploadSpeed"`
		Connections            string `json:"connections"`
		Seeder                 string `json:"seeder"`
		VerifiedLength         string `json:"verifiedLength"`
		VerifyIntegrityPending string `json:"verifyIntegrityPending"`
		ErrorCode              string `json:"errorCode"`
		ErrorMessage           string `json:"errorMessage"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Stats{}, fmt.Errorf("decode tellStatus: %w", err)
	}
	var errs []error
	num := func(name, s string) int64 {
		if s == "" {
			return 0
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("tellStatus %s: bad number %q", name, s))
			return 0
		}
		return v
	}
	st := Stats{
		Uploaded:     num("uploadLength", r.UploadLength),
		Downloaded:   Unknown, // aria2 keeps no downloaded-bytes counter it would report
		Size:         num("totalLength", r.TotalLength),
		UploadRate:   num("uploadSpeed", r.UploadSpeed),
		DownloadRate: num("downloadSpeed", r.DownloadSpeed),
		NumPeers:     int(num("connections", r.Connections)),
		State:        r.Status,
	}
	done := num("completedLength", r.CompletedLength)
	if len(errs) > 0 {
		return Stats{}, errors.Join(errs...)
	}
	st.Left = max(st.Size-done, 0)
	if st.Size > 0 {
		st.Progress = float64(done) / float64(st.Size)
	}
	st.Checking = r.VerifiedLength != "" || r.VerifyIntegrityPending == "true"
	if r.Status == "error" {
		st.Error = fmt.Sprintf("%s: %s", r.ErrorCode, r.ErrorMessage)
	}
	st.Seeding = r.Status == "active" && r.Seeder == "true" && !st.Checking && st.Size > 0 && st.Left == 0
	return st, nil
}

// stop: SIGINT is aria2's graceful stop ('stopped' announce); it treats
// SIGTERM as an emergency shutdown.
func (a *aria2) stop(ctx context.Context) error {
	if err := a.p.signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("aria2: SIGINT: %w", err)
	}
	return nil
}
