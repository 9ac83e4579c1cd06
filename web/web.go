// Package web embeds Starling's browser app and JavaScript client library.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// indexFile is served at "/" and at every room link "/r/{room}".
const indexFile = "index.html"

// contentTypes fixes the types of the files the app ships, so responses do
// not depend on the host's MIME tables.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".mjs":  "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".json": "application/json",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".txt":  "text/plain; charset=utf-8",
}

// asset is one embedded file, read once.
type asset struct {
	name        string
	data        []byte
	contentType string
	etag        string
}

type handler struct {
	assets map[string]*asset // by path relative to static/, e.g. "app.js"
}

// Handler serves the browser app: index.html at "/" and "/r/{room}", and the
// other files of static/ by name ("/starling.js", "/app.js", ...). Responses
// carry "Cache-Control: no-cache" and an ETag, so browsers revalidate and get
// 304 when nothing changed. Only GET and HEAD are allowed. Mount it at the
// root of the HTTP mux: the page loads its scripts by absolute paths.
func Handler() http.Handler {
	h := &handler{assets: make(map[string]*asset)}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		sum := sha256.Sum256(data)
		h.assets[name] = &asset{
			name:        name,
			data:        data,
			contentType: contentType(name),
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a build defect.
		panic("web: reading embedded files: " + err.Error())
	}
	return h
}

func contentType(name string) string {
	if t, ok := contentTypes[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A path that is no page is 404 whatever the method: this handler
	// gets every path the API does not serve, and a POST to a mistyped
	// API path (/v1/rooms/x/whipx) was told 405, as if it existed.
	a := h.lookup(r.URL.EscapedPath())
	if a == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", a.etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
}

// lookup maps an escaped request path to an asset: "/" and "/r/{room}" (one
// non-empty path segment, so a room name may hold an escaped "/") give
// index.html, "/{file}" gives that file.
func (h *handler) lookup(p string) *asset {
	if p == "/" {
		return h.assets[indexFile]
	}
	if room, ok := strings.CutPrefix(p, "/r/"); ok {
		if room == "" || strings.Contains(room, "/") {
			return nil
		}
		return h.assets[indexFile]
	}
	name, err := url.PathUnescape(strings.TrimPrefix(p, "/"))
	if err != nil || name == "" || strings.HasSuffix(name, "/") || path.Clean(name) != name {
		return nil
	}
	return h.assets[name]
}
