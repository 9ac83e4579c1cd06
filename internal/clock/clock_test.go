package clock

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Step moves Wall, never Nanos.
func TestStep(t *testing.T) {
	n0, w0 := Nanos(), Wall()
	Step(time.Hour)
	defer Step(-time.Hour)
	n1, w1 := Nanos(), Wall()
	if d := w1.Sub(w0); d < time.Hour || d > time.Hour+time.Second {
		t.Errorf("Wall moved %v, want an hour", d)
	}
	if d := time.Duration(n1 - n0); d < 0 || d > time.Second {
		t.Errorf("Nanos moved %v across the step", d)
	}
	if d := time.Duration(Nanos() - time.Now().UnixNano()); d.Abs() > time.Second {
		t.Errorf("Nanos is %v off unix time", d)
	}
}

// The packages that measure intervals use Nanos, never the wall clock's
// unix time (time.Now().UnixNano() and friends jump with the wall clock;
// an hour back held keyframe requests for an hour).
func TestNoWallClockIntervals(t *testing.T) {
	for _, dir := range []string{"sfu", "room", "mixer", "cluster/relay", "signaling"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			fs := token.NewFileSet()
			file, err := parser.ParseFile(fs, f, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !strings.HasPrefix(sel.Sel.Name, "Unix") {
					return true
				}
				if inner, ok := sel.X.(*ast.CallExpr); ok {
					if s, ok := inner.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "Now" {
						if id, ok := s.X.(*ast.Ident); ok && id.Name == "time" {
							t.Errorf("%s: time.Now().%s(): use clock.Nanos() for intervals, clock.Wall() for wall time", fs.Position(call.Pos()), sel.Sel.Name)
						}
					}
				}
				return true
			})
		}
	}
}
