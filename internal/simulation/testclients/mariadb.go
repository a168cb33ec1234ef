package testclients

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the MariaDB driver the tracker connectors use
)

// MariaDB binaries (Debian's mariadb-server).
const (
	mariadbd        = "/usr/sbin/mariadbd"
	mariadbInstall  = "mariadb-install-db"
	mariadbDatabase = "tracker"
)

// StartMariaDB starts a throwaway MariaDB server (Debian's mariadb-server)
// with its data under the test's own directory, listening on a free port
// of 127.0.0.1 only, and returns a DSN for the go-sql-driver/mysql driver
// to an empty database. The server is killed when the test ends. It skips
// the test when MariaDB is not installed, except under CI=true where that
// fails it.
func StartMariaDB(ctx context.Context, t testing.TB) string {
	t.Helper()
	Require(t, mariadbInstall)
	if _, err := os.Stat(mariadbd); err != nil {
		Require(t, "mariadbd")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var asRoot []string // mariadbd refuses to run as root unless told to
	if os.Geteuid() == 0 {
		asRoot = []string{"--user=root"}
	}
	install := exec.CommandContext(ictx, mariadbInstall, append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, asRoot...)...)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	port := FreePort(t, "127.0.0.1")
	p := newProcess()
	cmd := exec.Command(mariadbd, "--no-defaults", "--datadir="+data, "--socket="+filepath.Join(dir, "mysqld.sock"),
		"--port="+strconv.Itoa(port), "--bind-address=127.0.0.1", "--pid-file="+filepath.Join(dir, "mysqld.pid"),
		"--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=32M")
	cmd.Args = append(cmd.Args, asRoot...)
	if err := p.launch(cmd, dir, "mariadb.log", []string{"PATH=/usr/sbin:/usr/bin:/bin"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	root := fmt.Sprintf("root@tcp(127.0.0.1:%d)/", port)
	db, err := sql.Open("mysql", root)
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
			t.Fatalf("mariadb did not come up: %v\n%s", err, p.log())
		}
		time.Sleep(100 * time.Millisecond) // polling a starting server
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+mariadbDatabase+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?parseTime=true", port, mariadbDatabase)
}
