// Package web is the controller's dashboard: static HTML, CSS and JavaScript modules embedded
// in the binary (no CDN, no build step), served by `outpost serve --http` under /. The page
// holds no data of its own: it reads the token-protected JSON API (/v1/...) with the API token
// the user types into its login form. The token lives in the tab's sessionStorage and travels
// only in the Authorization header, never in a URL, so it does not reach logs, history or
// Referer headers; closing the tab forgets it.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed assets
var assets embed.FS

// Assets is the dashboard's files (index.html at the root).
func Assets() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// csp allows nothing but this origin: no inline script, no third party, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the dashboard. Only GET and HEAD are answered; unknown paths are 404 (the
// page routes in its fragment, #/device/ID, so the server never needs to).
func Handler() http.Handler {
	files := http.FileServerFS(Assets())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		// The assets change only with the binary: revalidate rather than cache blindly.
		h.Set("Cache-Control", "no-cache")
		if strings.HasSuffix(r.URL.Path, ".js") {
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		}
		files.ServeHTTP(w, r)
	})
}
