package web

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServesFiles(t *testing.T) {
	h := Handler()
	index, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, contentType string
		index             bool
	}{
		{"/", "text/html; charset=utf-8", true},
		{"/r/abc", "text/html; charset=utf-8", true},
		{"/r/team%20sync", "text/html; charset=utf-8", true},
		{"/r/a%2Fb", "text/html; charset=utf-8", true},
		{"/r/abc?name=Ann&autojoin=1", "text/html; charset=utf-8", true},
		{"/index.html", "text/html; charset=utf-8", true},
		{"/starling.js", "text/javascript; charset=utf-8", false},
		{"/starling-rpc.js", "text/javascript; charset=utf-8", false},
		{"/app.js", "text/javascript; charset=utf-8", false},
		{"/style.css", "text/css; charset=utf-8", false},
	}
	for _, c := range cases {
		res := get(t, h, http.MethodGet, c.path, nil)
		b := body(t, res)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", c.path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != c.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.contentType)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q", c.path, got)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", c.path, got)
		}
		if c.index && b != string(index) {
			t.Errorf("GET %s: not index.html", c.path)
		}
		if !c.index && len(b) == 0 {
			t.Errorf("GET %s: empty body", c.path)
		}
	}
	if b := body(t, get(t, h, http.MethodGet, "/starling.js", nil)); !strings.Contains(b, "export class StarlingClient") {
		t.Error("/starling.js does not hold the client library")
	}
}

func TestNotFound(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/missing.js", "/r/", "/r/a/b", "/static/app.js", "/static/", "/x/../app.js", "/app.js/", "//app.js"} {
		if res := get(t, h, http.MethodGet, p, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, res.StatusCode)
		}
	}
}

func TestMethodsAndRevalidation(t *testing.T) {
	h := Handler()
	res := get(t, h, http.MethodPost, "/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: status %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
	res = get(t, h, http.MethodHead, "/app.js", nil)
	if res.StatusCode != http.StatusOK || body(t, res) != "" {
		t.Errorf("HEAD /app.js: status %d", res.StatusCode)
	}
	etag := get(t, h, http.MethodGet, "/app.js", nil).Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if res := get(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": etag}); res.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: status %d, want 304", res.StatusCode)
	}
}

// TestReferencesResolve checks that every script, stylesheet and module
// import the page uses is served: the page loads them by absolute path, so
// they work from "/r/{room}" too.
func TestReferencesResolve(t *testing.T) {
	h := Handler()
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"|from '([^']+)'`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".html") || strings.HasSuffix(p, ".js")) {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range refs.FindAllStringSubmatch(string(b), -1) {
			ref := m[1] + m[2]
			switch {
			case strings.HasPrefix(ref, "#"):
				continue // a link within the page
			case strings.HasPrefix(ref, "./"):
				ref = "/" + strings.TrimPrefix(ref, "./") // every file sits at the root
			case !strings.HasPrefix(ref, "/"):
				t.Errorf("%s: %q is neither absolute nor ./relative", p, ref)
				continue
			}
			if res := get(t, h, http.MethodGet, ref, nil); res.StatusCode != http.StatusOK {
				t.Errorf("%s refers to %s: status %d", p, ref, res.StatusCode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestJavaScript checks the modules parse and runs the JavaScript tests
// (testdata/*_test.mjs, Node's test runner) when Node.js is installed; in CI
// (CI=true) a missing node fails the test.
func TestJavaScript(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatalf("node is not installed, and CI=%s says the JavaScript tests must run (Debian package nodejs)", ci)
		}
		t.Skip("node not installed: skipping the JavaScript tests (with CI=true this fails)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	entries, err := fs.Glob(static, "static/*.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range entries {
		src, _ := static.ReadFile(p)
		cmd := exec.CommandContext(ctx, node, "--input-type=module", "--check")
		cmd.Stdin = strings.NewReader(string(src))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v\n%s", p, err, out)
		}
	}
	tests, err := filepath.Glob("testdata/*_test.mjs")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no testdata/*_test.mjs (%v)", err)
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, node, append([]string{"--test", "--test-reporter=tap"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", strings.Join(tests, " "), err, out)
	}
	summary := regexp.MustCompile(`(?m)^# (tests|pass|fail) \d+$`).FindAllString(string(out), -1)
	t.Logf("node --test %s (%v): %s", strings.Join(tests, " "), time.Since(start).Round(time.Millisecond), strings.Join(summary, ", "))
}
