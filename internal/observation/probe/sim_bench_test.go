package probe

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
)

// msePrime is the 768-bit prime of Message Stream Encryption (the one
// github.com/anacrolix/torrent/mse, which peerwire uses, sets in its init);
// the generator is 2 and each side's secret exponent is 160 random bits.
var msePrime, _ = new(big.Int).SetString("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)

// modExpsPerProbe is the MSE arithmetic of one encrypted probe when both
// ends run in this process: each side computes its public key (2^x mod p)
// and the shared secret (Y^x mod p).
const modExpsPerProbe = 4

// modExpTime measures the mean time of n modular exponentiations as MSE
// computes its shared secret: a 768-bit base, a 160-bit exponent, the MSE
// prime, math/big's Exp.
func modExpTime(n int) time.Duration {
	x, y := mseOperands()
	var s big.Int
	start := time.Now()
	for range n {
		s.Exp(y, x, msePrime)
	}
	return time.Since(start) / time.Duration(n)
}

func mseOperands() (x, y *big.Int) {
	var b [20]byte
	rand.Read(b[:])
	x = new(big.Int).SetBytes(b[:])
	rand.Read(b[:])
	y = new(big.Int).Exp(big.NewInt(2), new(big.Int).SetBytes(b[:]), msePrime) // a peer's public key
	return x, y
}

// ceiling is the probe rate the MSE arithmetic alone allows on this
// process's cores, given the time of one modular exponentiation.
func ceiling(modExp time.Duration) float64 {
	return float64(runtime.GOMAXPROCS(0)) / (modExpsPerProbe * modExp.Seconds())
}

// BenchmarkMSEModExp is one 768-bit modular exponentiation with a 160-bit
// exponent, as MSE computes them (math/big, through anacrolix/torrent/mse):
// the public key 2^x mod p and the shared secret Y^x mod p.
// ceiling-probes/s is the encrypted-probe rate that arithmetic alone
// allows when both ends of every probe run in this process on all its
// cores (four per probe), before TCP, SHA-1, RC4 and scheduling.
func BenchmarkMSEModExp(b *testing.B) {
	x, y := mseOperands()
	for _, v := range []struct {
		name string
		base *big.Int
	}{{"public-key", big.NewInt(2)}, {"shared-secret", y}} {
		b.Run(v.name, func(b *testing.B) {
			var s big.Int
			for b.Loop() {
				s.Exp(v.base, x, msePrime)
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(per.Nanoseconds())/1e3, "µs/modexp")
			b.ReportMetric(ceiling(per), "ceiling-probes/s")
		})
	}
}

// BenchmarkEncryptedProbes is the rate of encrypted snapshot probes (TCP
// connect, MSE with RC4, BitTorrent and extension handshakes, the peer's
// bitfield, close) against a 1,000-peer simulated swarm (internal/swarmsim,
// StartSwarm: every peer on 127.0.0.1, every one requiring MSE/RC4, seeders
// so that none downloads), cycling through the peers with at most 16 or 64
// probes at once. Both ends run in this process. Next to probes/s:
// ceiling-probes/s, the bound set by the MSE arithmetic (see
// BenchmarkMSEModExp; measured again here, on the same cores at the same
// moment), cpu-µs/probe, the process CPU time per probe (both ends), and
// failed, the probes that did not end with the peer's bitfield.
func BenchmarkEncryptedProbes(b *testing.B) {
	const peers = 1000
	needFiles(b)
	payload, tor, err := swarmsim.NewPayload("probes.bin", 4<<20, 16<<10, 6)
	if err != nil {
		b.Fatal(err)
	}
	specs := make([]swarmsim.PeerSpec, peers)
	for i := range specs {
		specs[i] = swarmsim.PeerSpec{Role: swarmsim.RoleSeeder, Encryption: swarmsim.EncRequired}
	}
	sw, err := swarmsim.StartSwarm(context.Background(), swarmsim.SwarmConfig{Payload: payload, Peers: specs, Seed: 6})
	if err != nil {
		b.Fatal(err)
	}
	defer sw.Close()
	var addrs []netip.AddrPort
	for _, p := range sw.Peers() {
		addrs = append(addrs, p.Addr())
	}
	target := Target{InfoHash: tor.InfoHash, NumPieces: tor.NumPieces, PieceSize: tor.PieceSize, Verify: tor.VerifyPiece}
	opts := Options{Policy: peerwire.PolicyRequire, BitfieldOnly: true, Timeout: 20 * time.Second}
	for _, conc := range []int{16, 64} {
		b.Run(fmt.Sprintf("concurrency-%d", conc), func(b *testing.B) {
			modExp := modExpTime(500)
			sem := make(chan struct{}, conc)
			var wg sync.WaitGroup
			var failed atomic.Int64
			ctx := context.Background()
			n := 0
			cpu0, start := cpuTime(b), time.Now()
			for b.Loop() {
				sem <- struct{}{}
				addr := addrs[n%len(addrs)]
				n++
				wg.Go(func() {
					defer func() { <-sem }()
					r, err := Run(ctx, addr, target, opts)
					if err != nil || r.SnapshotBitfield == nil || r.Encryption != string(peerwire.MethodRC4) {
						failed.Add(1)
					}
				})
			}
			wg.Wait()
			elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
			b.ReportMetric(float64(n)/elapsed.Seconds(), "probes/s")
			b.ReportMetric(ceiling(modExp), "ceiling-probes/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/probe")
			b.ReportMetric(float64(failed.Load()), "failed")
			if f := failed.Load(); f*100 > int64(n) {
				b.Errorf("%d of %d probes did not get the bitfield over RC4", f, n)
			}
		})
	}
}

// needFiles skips the benchmark when the descriptor limit (which Go raises
// to the hard limit at start) is too low for a thousand listening peers and
// the probes' connections.
func needFiles(b *testing.B) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur < 4096 {
		b.Skipf("descriptor limit %d is too low for 1,000 peers", lim.Cur)
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
