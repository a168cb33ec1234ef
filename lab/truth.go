package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
)

// Sample is one line of truth.jsonl: one host at one moment. Wire counters
// are the host's link counters (Ethernet frames, from labnet); the client
// fields are the client's own API counters (payload bytes), absent for the
// auditor and the cheaters.
type Sample struct {
	T        time.Time `json:"t"`
	Host     string    `json:"host"`
	WireSent uint64    `json:"wire_sent"`
	WireRecv uint64    `json:"wire_recv"`
	// Client counters; Client is false when the host runs no client yet.
	Client     bool   `json:"client"`
	Uploaded   int64  `json:"uploaded,omitempty"`
	Downloaded int64  `json:"downloaded,omitempty"` // -1: the client keeps none (aria2)
	Left       int64  `json:"left,omitempty"`
	Size       int64  `json:"size,omitempty"`
	Seeding    bool   `json:"seeding,omitempty"`
	UpRate     int64  `json:"up_rate,omitempty"`
	DownRate   int64  `json:"down_rate,omitempty"`
	Peers      int    `json:"peers,omitempty"`
	Err        string `json:"err,omitempty"`
	// Exited: the client's process had exited (the lab stops clients only
	// after the last sample: this is a crash).
	Exited bool `json:"exited,omitempty"`
}

// Have is the payload the client holds (verified), bytes.
func (s Sample) Have() int64 { return s.Size - s.Left }

// sampler writes a Sample per host every second.
type sampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func startSampler(path string, rn *running, log *slog.Logger) (*sampler, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("truth: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		w := bufio.NewWriter(f)
		defer func() {
			if err := w.Flush(); err != nil {
				log.Warn("truth: flush", "err", err)
			}
			f.Close()
		}()
		enc := json.NewEncoder(w)
		tick := time.NewTicker(samplePeriod)
		defer tick.Stop()
		for {
			for _, smp := range sampleAll(ctx, rn) {
				if err := enc.Encode(smp); err != nil {
					log.Warn("truth: write", "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s, nil
}

// sampleAll reads every host's counters and every client's stats
// concurrently, so that one slow API does not shift the others' samples.
func sampleAll(ctx context.Context, rn *running) []Sample {
	rn.mu.Lock()
	names := make([]string, 0, len(rn.hosts))
	for n := range rn.hosts {
		names = append(names, n)
	}
	clients := make(map[string]*testclients.Client, len(rn.clients))
	for n, c := range rn.clients {
		clients[n] = c
	}
	rn.mu.Unlock()
	sort.Strings(names)
	out := make([]Sample, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			s := Sample{Host: n}
			if c := clients[n]; c != nil {
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				st, err := c.Stats(sctx)
				cancel()
				s.Client = err == nil
				if err != nil {
					s.Err, s.Exited = err.Error(), errors.Is(err, testclients.ErrExited)
				} else {
					s.Uploaded, s.Downloaded, s.Left, s.Size = st.Uploaded, st.Downloaded, st.Left, st.Size
					s.Seeding, s.UpRate, s.DownRate, s.Peers = st.Seeding, st.UploadRate, st.DownloadRate, st.NumPeers
				}
			}
			s.T = time.Now()
			if cn, err := rn.hosts[n].Counters(ctx); err == nil {
				s.WireSent, s.WireRecv = cn.SentBytes, cn.RecvBytes
			} else if s.Err == "" {
				s.Err = err.Error()
			}
			out[i] = s
		})
	}
	wg.Wait()
	return out
}

// stop ends sampling and waits for the file to be written (bounded by one
// round of API requests, 2 s).
func (s *sampler) stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
}

// ReadTruth reads truth.jsonl, grouped by host and sorted by time.
func ReadTruth(r io.Reader) (map[string][]Sample, error) {
	out := map[string][]Sample{}
	dec := json.NewDecoder(r)
	for line := 1; ; line++ {
		var s Sample
		if err := dec.Decode(&s); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("truth sample %d: %w", line, err)
		}
		out[s.Host] = append(out[s.Host], s)
	}
	for _, ss := range out {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].T.Before(ss[j].T) })
	}
	return out, nil
}
