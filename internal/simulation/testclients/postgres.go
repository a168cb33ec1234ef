package testclients

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver the store uses
)

// postgresBin finds Debian's PostgreSQL server binaries (not on PATH:
// /usr/lib/postgresql/VERSION/bin).
func postgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(ms) == 0 {
		return "", fmt.Errorf("initdb (Debian: apt-get install postgresql)")
	}
	return filepath.Dir(ms[len(ms)-1]), nil
}

// StartPostgres starts a throwaway PostgreSQL cluster (Debian's postgresql)
// with its data under the test's own directory, listening on a free port of
// 127.0.0.1 only (no Unix socket), and returns the URL of an empty
// database. As root it runs the server as the postgres user, which
// PostgreSQL requires. The server is stopped when the test ends. It skips
// the test when PostgreSQL is not installed, except under CI=true where
// that fails it.
func StartPostgres(ctx context.Context, t testing.TB) string {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		msg := "testclients: missing " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL refuses to run as root and there is no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The postgres user must reach the test's directory.
		for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o711)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	initdb := exec.CommandContext(ictx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := FreePort(t, "127.0.0.1")
	p := newProcess()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-h", "127.0.0.1",
		"-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "max_connections=60", "-c", "shared_buffers=16MB")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := p.launch(cmd, dir, "postgres.log", []string{"PATH=/usr/bin:/bin", "LANG=C"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.PingContext(pctx)
		cancel()
		if err == nil {
			break
		}
		if p.hasExited() || time.Now().After(deadline) {
			t.Fatalf("postgres did not come up: %v\n%s", err, p.log())
		}
		time.Sleep(100 * time.Millisecond) // polling a starting server
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE swarmaudit"); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/swarmaudit?sslmode=disable", port)
}

// StoreEngineEnv picks the store engine of the tests: SQLite by default,
// PostgreSQL when it is "postgres" (CI runs the store's users both ways).
const StoreEngineEnv = "SWARMAUDIT_STORE_ENGINE"

// pgByPath maps a test's database path to the PostgreSQL database standing
// in for it, so that a test reopening "the same file" reopens the same
// database.
var pgByPath sync.Map

// StoreDB is the database a test opens for the SQLite file path: the path
// itself, or with SWARMAUDIT_STORE_ENGINE=postgres the URL of a throwaway
// PostgreSQL database (StartPostgres), the same one for the same path.
func StoreDB(t testing.TB, path string) string {
	t.Helper()
	if os.Getenv(StoreEngineEnv) != "postgres" {
		return path
	}
	if u, ok := pgByPath.Load(path); ok {
		return u.(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := StartPostgres(ctx, t)
	pgByPath.Store(path, u)
	return u
}
