package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/httpapi"
)

// apiClient talks to `outpost serve --http`'s JSON API (fleet/httpapi) for the models and
// rollout commands.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// apiFlags are the connection flags every API command takes.
type apiFlags struct {
	server    string
	tokenFile string
}

func (f *apiFlags) add(cmd *cobra.Command) {
	server := os.Getenv("OUTPOST_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&f.server, "server", server, "controller API URL (env OUTPOST_SERVER)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", filepath.Join(defaultDataDir, httpapi.TokenFile), "API token file (env OUTPOST_TOKEN holds the token itself)")
}

func (f *apiFlags) client() (*apiClient, error) {
	u, err := url.Parse(f.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want http://host:port", f.server)
	}
	tok := strings.TrimSpace(os.Getenv("OUTPOST_TOKEN"))
	if tok == "" {
		b, err := readLimited(f.tokenFile, "API token", 4096)
		if err != nil {
			return nil, fmt.Errorf("%w (run the CLI where `outpost serve --http` keeps its data directory, or set --token-file or OUTPOST_TOKEN)", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return &apiClient{base: strings.TrimRight(f.server, "/"), token: tok, http: &http.Client{Timeout: 5 * time.Minute}}, nil
}

// do sends a request and decodes a JSON answer into out; an error answer becomes an error
// carrying the server's one-line message.
func (c *apiClient) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("controller API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("controller API: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e httpapi.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("controller API: %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("controller API: decode answer: %w", err)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
