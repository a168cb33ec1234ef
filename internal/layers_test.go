// Package internal_test checks that the folders under internal/ read as the
// pipeline (docs/architecture.md): a stage imports only stages before it,
// and no production package imports the simulation.
package internal_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/swarmaudit/swarmaudit/internal/"

// rank orders the stages: a package may import packages of its own rank
// or a lower one. The evidence records (announces) are the vocabulary the
// tracker client and server speak, so they come early.
var rank = []struct {
	prefix string
	rank   int
}{
	{"wire/", 0},
	{"evidence/", 1},
	{"trackerclient", 2},
	{"trackerserver", 2},
	{"discovery", 3},
	{"observation/", 4},
	{"analysis/", 5},
	{"audit", 6},
	{"reports", 7},
	{"liveprogress", 7},
	{"serve", 8},
	{"simulation/", 9},
}

func rankOf(t *testing.T, pkg string) int {
	for _, r := range rank {
		if strings.HasPrefix(pkg, r.prefix) {
			return r.rank
		}
	}
	t.Fatalf("package internal/%s has no place in the pipeline: add it to rank (and to docs/architecture.md)", pkg)
	return 0
}

func TestPipelineLayers(t *testing.T) {
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "testdata") {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		if pkg == "." {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		from := rankOf(t, pkg)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module) {
				continue
			}
			dep := strings.TrimPrefix(p, module)
			to := rankOf(t, dep)
			checked++
			switch {
			case to == 9 && from != 9:
				t.Errorf("%s imports the simulation (%s): production code must not", path, dep)
			case to > from:
				t.Errorf("%s (stage %d) imports %s (stage %d): against the pipeline", path, from, dep, to)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d imports checked: is the walk wrong?", checked)
	}
}
