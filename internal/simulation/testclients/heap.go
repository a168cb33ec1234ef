package testclients

import "runtime"

// LiveHeap is the heap in use after a collection, and the goroutine
// count, for the memory benchmarks.
func LiveHeap() (uint64, int) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, runtime.NumGoroutine()
}
