package utp

import (
	"testing"
	"time"
)

// BenchmarkStream moves 8 MiB over one uTP connection on loopback: the
// throughput our read loop, acks and LEDBAT reach (bytes/s in MB/s).
func BenchmarkStream(b *testing.B) {
	srv := listen(b, Options{Accept: true})
	cli := listen(b, Options{})
	c := dial(b, cli, srv.AddrPort())
	d := accept(b, srv)
	const n = 8 << 20
	payload := randomBytes(n, 9)
	buf := make([]byte, 64<<10)
	b.SetBytes(n)
	b.ResetTimer()
	for range b.N {
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			done <- err
		}()
		d.SetReadDeadline(time.Now().Add(time.Minute))
		for got := 0; got < n; {
			k, err := d.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
