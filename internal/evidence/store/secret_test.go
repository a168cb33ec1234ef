package store

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// TestSecret: a database's secret is created once, survives a reopen, and
// differs between databases.
func TestSecret(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, filepath.Join(dir, "a.db"))
	k1, err := a.Secret(ctx, SecretPasskeyKey)
	if err != nil || len(k1) != 32 {
		t.Fatalf("secret %x, %v", k1, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = openTest(t, filepath.Join(dir, "a.db"))
	k2, err := a.Secret(ctx, SecretPasskeyKey)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("after a reopen: %x, %v; want %x", k2, err, k1)
	}
	b := openTest(t, filepath.Join(dir, "b.db"))
	k3, err := b.Secret(ctx, SecretPasskeyKey)
	if err != nil || bytes.Equal(k1, k3) {
		t.Fatalf("two databases share a secret: %x, %v", k3, err)
	}
}
