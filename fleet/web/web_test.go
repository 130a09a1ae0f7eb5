package web

import (
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	tests := []struct {
		method, path string
		code         int
		ctype, body  string
	}{
		{"GET", "/", 200, "text/html", `<script type="module" src="app.js">`},
		{"GET", "/app.js", 200, "text/javascript", "import { lineChart"},
		{"GET", "/chart.js", 200, "text/javascript", "export function lineChart"},
		{"GET", "/style.css", 200, "text/css", "figure.chart"},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/nope.js", 404, "", ""},
		{"POST", "/", 405, "", ""},
		{"DELETE", "/app.js", 405, "", ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, rec.Code, tt.code)
			continue
		}
		if tt.code != 200 {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", tt.method, tt.path, ct, tt.ctype)
		}
		if !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("%s %s: body lacks %q", tt.method, tt.path, tt.body)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: security headers %v", tt.method, tt.path, rec.Header())
		}
	}
}

// TestAssetsSelfContained: every file the page loads is embedded, and none comes from
// another origin (no CDN) or is inline (the CSP forbids inline script and style).
func TestAssetsSelfContained(t *testing.T) {
	ref := regexp.MustCompile(`(?:src|href)="([^"#]+)"|from '([^']+)'|import\(['"]([^'"]+)`)
	err := fs.WalkDir(Assets(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(Assets(), path)
		if err != nil {
			return err
		}
		text := string(data)
		if strings.Contains(text, "http://") && !strings.Contains(text, "http://www.w3.org/2000/svg") || strings.Contains(text, "https://") {
			t.Errorf("%s refers to another origin", path)
		}
		if strings.HasSuffix(path, ".html") && (regexp.MustCompile(`<script(?:[^>]*)>[^<]`).MatchString(text) || strings.Contains(text, "<style") || strings.Contains(text, " style=")) {
			t.Errorf("%s has inline script or style", path)
		}
		for _, m := range ref.FindAllStringSubmatch(text, -1) {
			target := strings.TrimPrefix(m[1]+m[2]+m[3], "./")
			if strings.HasPrefix(target, "data:") {
				continue
			}
			if _, err := fs.Stat(Assets(), target); err != nil {
				t.Errorf("%s loads %q, which is not embedded", path, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
