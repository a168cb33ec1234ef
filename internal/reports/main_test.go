package reports

import (
	"os"
	"testing"
)

func mkdirTemp() (string, error) { return os.MkdirTemp("", "swarmaudit-reports-") }

func TestMain(m *testing.M) {
	code := m.Run()
	if tempPath != "" {
		os.RemoveAll(tempPath)
	}
	os.Exit(code)
}
