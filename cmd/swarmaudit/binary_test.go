package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

// builtBinary builds swarmaudit once per test binary, as a user builds it
// (`go build`, no race detector), for tests that run it as a separate
// process: under a terminal, killed with SIGKILL, or at the speed a user
// sees.
func builtBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "swarmaudit-bin-")
		if built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "swarmaudit")
		built.out, built.err = exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build: %v\n%s", built.err, built.out)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}
