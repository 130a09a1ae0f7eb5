package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/pgstore"
	"github.com/outpost-ml/outpost/fleet/tufrepo"
	"github.com/outpost-ml/outpost/models/bundle"
)

// `outpost keys init|show|rotate-root|targets-key|rotate-online|resign-targets`: the fleet's
// TUF trust (fleet/tufrepo, docs/updates.md). Root and targets keys are files the
// user keeps offline and names with flags; the online snapshot and timestamp keys live in
// the controller's data directory.

// tufSubdir is where the controller keeps its TUF repository inside --data-dir.
const tufSubdir = "tuf"

func tufDir(dataDir string) string { return filepath.Join(dataDir, tufSubdir) }

func newTrustCmds() []*cobra.Command {
	return []*cobra.Command{newKeysInitCmd(), newKeysShowCmd(), newKeysRotateRootCmd(), newKeysTargetsKeyCmd(), newKeysRotateOnlineCmd(), newKeysResignTargetsCmd(), newKeysResignRootCmd()}
}

// readPrivateKeys loads PEM ed25519 private keys from files.
func readPrivateKeys(paths []string, what string) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	for _, p := range paths {
		data, err := readLimited(p, what+" key", keyFileLimit)
		if err != nil {
			return nil, err
		}
		k, err := bundle.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", what, p, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func publicOf(keys []ed25519.PrivateKey) []ed25519.PublicKey {
	out := make([]ed25519.PublicKey, len(keys))
	for i, k := range keys {
		out[i] = k.Public().(ed25519.PublicKey)
	}
	return out
}

// genKeyFiles writes a new key pair as PREFIX.key (0600) and PREFIX.pub, refusing to
// overwrite either.
func genKeyFiles(prefix string) (ed25519.PrivateKey, error) {
	for _, p := range []string{prefix + ".key", prefix + ".pub"} {
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("%s exists; refusing to overwrite a key", p)
		}
	}
	pub, priv, err := bundle.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	privPEM, err := bundle.MarshalPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubPEM, err := bundle.MarshalPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(prefix+".key", privPEM, 0o600); err != nil {
		return nil, err
	}
	return priv, writeFileAtomic(prefix+".pub", pubPEM, 0o644)
}

// openRepo opens the repository in DATA_DIR/tuf, or with storeURL the one scale-out replicas
// share in PostgreSQL (changes run under the store's lock, so replicas may keep running).
// Call done when finished with the repository.
func openRepo(dataDir, storeURL string, targetsKeys []ed25519.PrivateKey) (repo *tufrepo.Repo, done func(), err error) {
	if storeURL != "" {
		s, err := pgstore.Open(context.Background(), storeURL, pgstore.Options{})
		if err != nil {
			return nil, nil, err
		}
		if _, err := s.TUFFiles().ReadFile("meta/timestamp.json"); err != nil {
			s.Close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("no fleet trust in the store %s: start one replica with the data directory of `outpost keys init`", redact(storeURL))
			}
			return nil, nil, err
		}
		repo, err := tufrepo.OpenStorage(s.TUFFiles(), tufrepo.Options{TargetsKeys: targetsKeys})
		if err != nil {
			s.Close()
			return nil, nil, err
		}
		return repo, func() { s.Close() }, nil
	}
	repo, err = openDirRepo(dataDir, targetsKeys)
	return repo, func() {}, err
}

func openDirRepo(dataDir string, targetsKeys []ed25519.PrivateKey) (*tufrepo.Repo, error) {
	dir := tufDir(dataDir)
	if _, err := os.Stat(filepath.Join(dir, "meta", "1.root.json")); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no fleet trust in %s: run `outpost keys init --data-dir %s` first", dataDir, dataDir)
	}
	return tufrepo.Open(dir, tufrepo.Options{TargetsKeys: targetsKeys})
}

func newKeysInitCmd() *cobra.Command {
	var dataDir, outDir string
	var rootKeyFiles, targetsKeyFiles []string
	var rootThreshold int
	c := &cobra.Command{
		Use:   "init [--root-key FILE]... [--targets-key FILE]... [--out-dir DIR]",
		Short: "Create the fleet's TUF trust: root and targets keys (offline), online snapshot and timestamp keys, root.json",
		Long: `Create the fleet's TUF repository in DATA_DIR/tuf.

Root and targets keys sign offline: name existing key files with --root-key and --targets-key
(from outpost keys gen), or let init generate root.key and targets.key in --out-dir. Keep those
files off the controller: it only needs the targets key when it publishes models, and the root
key only to rotate keys. The snapshot and timestamp keys are generated in DATA_DIR/tuf/keys;
the controller re-signs those roles by itself.

Devices are provisioned with the root metadata this prints the path of (the agent's
trust/root.json).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rootKeys, err := readPrivateKeys(rootKeyFiles, "root")
			if err != nil {
				return err
			}
			targetsKeys, err := readPrivateKeys(targetsKeyFiles, "targets")
			if err != nil {
				return err
			}
			var generated []string
			if len(rootKeys) == 0 || len(targetsKeys) == 0 {
				if err := os.MkdirAll(outDir, 0o700); err != nil {
					return err
				}
				if abs, _ := filepath.Abs(outDir); strings.HasPrefix(abs+"/", mustAbs(dataDir)+"/") {
					return fmt.Errorf("--out-dir %s is inside --data-dir: offline keys must not live with the controller", outDir)
				}
			}
			if len(rootKeys) == 0 {
				k, err := genKeyFiles(filepath.Join(outDir, "root"))
				if err != nil {
					return err
				}
				rootKeys, generated = append(rootKeys, k), append(generated, filepath.Join(outDir, "root.key"))
			}
			if len(targetsKeys) == 0 {
				k, err := genKeyFiles(filepath.Join(outDir, "targets"))
				if err != nil {
					return err
				}
				targetsKeys, generated = append(targetsKeys, k), append(generated, filepath.Join(outDir, "targets.key"))
			}
			repo, err := tufrepo.Init(tufDir(dataDir), rootKeys, targetsKeys, tufrepo.Options{RootThreshold: rootThreshold})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, g := range generated {
				fmt.Fprintf(out, "generated %s (offline key: move it off this machine)\n", g)
			}
			fmt.Fprintf(out, "initialised fleet trust in %s\n", repo.Dir())
			fmt.Fprintf(out, "pin this root on devices (as trust/root.json): %s\n", filepath.Join(repo.Dir(), "meta", "1.root.json"))
			return printStatus(out, repo.Status())
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data-dir", defaultDataDir, "the controller's data directory")
	f.StringVar(&outDir, "out-dir", "outpost-offline-keys", "where generated root and targets keys are written")
	f.StringArrayVar(&rootKeyFiles, "root-key", nil, "existing root private key `file` (repeatable)")
	f.StringArrayVar(&targetsKeyFiles, "targets-key", nil, "existing targets private key `file` (repeatable)")
	f.IntVar(&rootThreshold, "root-threshold", 1, "root signatures a new root needs")
	return c
}

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}

func newKeysShowCmd() *cobra.Command {
	var dataDir, storeURL string
	c := &cobra.Command{
		Use:   "show",
		Short: "Show the fleet's TUF roles (versions, expiry, thresholds, key ids) and signed targets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, done, err := openRepo(dataDir, storeURL, nil)
			if err != nil {
				return err
			}
			defer done()
			return printStatus(cmd.OutOrStdout(), repo.Status())
		},
	}
	c.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the controller's data directory")
	c.Flags().StringVar(&storeURL, "store", "", storeFlagUsage)
	return c
}

// storeFlagUsage documents the keys commands' --store.
const storeFlagUsage = "PostgreSQL store `URL` of scale-out replicas: use the repository they share in the store instead of DATA_DIR/tuf"

func printStatus(out io.Writer, st tufrepo.Status) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tTHRESHOLD\tKEYS")
	for _, r := range st.Roles {
		ids := make([]string, len(r.KeyIDs))
		for i, id := range r.KeyIDs {
			ids[i] = id[:min(len(id), 16)]
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", r.Name, r.Version, r.Expires.UTC().Format(time.RFC3339), r.Threshold, strings.Join(ids, ","))
	}
	// Offline roles expire unless a key holder acts; say so well before devices refuse them.
	now := time.Now()
	for _, r := range st.Roles {
		fix := map[string]string{"root": "outpost keys resign-root --key ROOT.key", "targets": "outpost keys resign-targets --targets-key TARGETS.key"}[r.Name]
		if left := r.Expires.Sub(now); fix != "" && left < 30*24*time.Hour {
			fmt.Fprintf(tw, "WARNING: %s expires in %s; devices refuse expired metadata: run %s\n", r.Name, left.Round(time.Hour), fix)
		}
	}
	if len(st.Targets) > 0 {
		fmt.Fprintln(tw, "\nTARGET\tMODEL\tRELEASE\tBYTES\tSHA256")
		for _, t := range st.Targets {
			fmt.Fprintf(tw, "%s\t%s %s\t%d\t%d\t%s\n", t.Name, t.Custom.Name, t.Custom.Version, t.Custom.Release, t.Length, t.SHA256[:16])
		}
	}
	return tw.Flush()
}

// repoChange is a keys subcommand that changes the repository in DATA_DIR/tuf: it reads the
// key files named by --KEYFLAG, opens the repository, applies change and prints the result.
type repoChange struct {
	use, short, long string
	keyFlag, keyWhat string // the flag naming the signing key files, and which role's they are
	flags            func(c *cobra.Command)
	change           func(repo *tufrepo.Repo, keys []ed25519.PrivateKey) error
}

func (rc repoChange) command() *cobra.Command {
	var dataDir, storeURL string
	var keyFiles []string
	c := &cobra.Command{
		Use: rc.use, Short: rc.short, Long: rc.long,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := readPrivateKeys(keyFiles, rc.keyWhat)
			if err != nil {
				return err
			}
			var targetsKeys []ed25519.PrivateKey
			if rc.keyWhat == "targets" {
				targetsKeys = keys
			}
			repo, done, err := openRepo(dataDir, storeURL, targetsKeys)
			if err != nil {
				return err
			}
			defer done()
			if err := rc.change(repo, keys); err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), repo.Status())
		},
	}
	c.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the controller's data directory")
	c.Flags().StringVar(&storeURL, "store", "", storeFlagUsage)
	c.Flags().StringArrayVar(&keyFiles, rc.keyFlag, nil, rc.keyWhat+" private key `file` (repeatable)")
	if rc.flags != nil {
		rc.flags(c)
	}
	return c
}

func newKeysRotateRootCmd() *cobra.Command {
	var newKeys []string
	var threshold int
	var online bool
	return repoChange{
		use:   "rotate-root --key OLD.key... --new-root-key NEW.key... [--threshold N] [--rotate-online]",
		short: "Publish the next root version with new root keys, signed by the current and the new root keys",
		long: `Publish root version N+1 listing the new root keys. Devices holding root N accept N+1 only
if it carries the threshold of root N's signatures and of its own, so give both the current
root keys (--key) and the new ones (--new-root-key). Old root keys not listed again are revoked.`,
		keyFlag: "key", keyWhat: "root",
		flags: func(c *cobra.Command) {
			f := c.Flags()
			f.StringArrayVar(&newKeys, "new-root-key", nil, "new root private key `file` (repeatable; from outpost keys gen)")
			f.IntVar(&threshold, "threshold", 0, "root signatures the new root needs (0: keep)")
			f.BoolVar(&online, "rotate-online", false, "also replace the online snapshot and timestamp keys")
		},
		change: func(repo *tufrepo.Repo, olds []ed25519.PrivateKey) error {
			news, err := readPrivateKeys(newKeys, "new root")
			if err != nil {
				return err
			}
			if len(news) == 0 {
				return errors.New("rotate-root: give at least one --new-root-key")
			}
			u := tufrepo.RootUpdate{RootKeys: publicOf(news), RootThreshold: threshold, RotateOnline: online}
			return repo.UpdateRoot(u, append(olds, news...))
		},
	}.command()
}

func newKeysTargetsKeyCmd() *cobra.Command {
	var newKeys []string
	var revoke bool
	return repoChange{
		use:   "targets-key --key ROOT.key --new NEW.key... [--revoke-others]",
		short: "Add a targets key (or replace all of them) through a new root version",
		long: `Publish root version N+1 whose targets role lists the new targets keys, besides the current
ones unless --revoke-others, and re-sign the current targets with the new keys. Use
--revoke-others when a targets key may have leaked: devices then refuse anything it signs.`,
		keyFlag: "key", keyWhat: "root",
		flags: func(c *cobra.Command) {
			c.Flags().StringArrayVar(&newKeys, "new", nil, "new targets private key `file` (repeatable; from outpost keys gen)")
			c.Flags().BoolVar(&revoke, "revoke-others", false, "remove every other targets key")
		},
		change: func(repo *tufrepo.Repo, roots []ed25519.PrivateKey) error {
			news, err := readPrivateKeys(newKeys, "targets")
			if err != nil {
				return err
			}
			if len(news) == 0 {
				return errors.New("targets-key: give at least one --new targets key")
			}
			keys := publicOf(news)
			if !revoke {
				cur, err := repo.TargetsPublicKeys()
				if err != nil {
					return err
				}
				keys = append(cur, keys...)
			}
			return repo.UpdateRoot(tufrepo.RootUpdate{TargetsKeys: keys}, append(roots, news...))
		},
	}.command()
}

func newKeysRotateOnlineCmd() *cobra.Command {
	return repoChange{
		use:     "rotate-online --key ROOT.key...",
		short:   "Replace the online snapshot and timestamp keys (after the controller's disk may have leaked)",
		keyFlag: "key", keyWhat: "root",
		change: func(repo *tufrepo.Repo, roots []ed25519.PrivateKey) error {
			return repo.UpdateRoot(tufrepo.RootUpdate{RotateOnline: true}, roots)
		},
	}.command()
}

func newKeysResignRootCmd() *cobra.Command {
	return repoChange{
		use:     "resign-root --key ROOT.key...",
		short:   "Publish the next root version with the same keys and a later expiry",
		keyFlag: "key", keyWhat: "root",
		change: func(repo *tufrepo.Repo, roots []ed25519.PrivateKey) error {
			return repo.UpdateRoot(tufrepo.RootUpdate{}, roots)
		},
	}.command()
}

func newKeysResignTargetsCmd() *cobra.Command {
	return repoChange{
		use:     "resign-targets --targets-key FILE...",
		short:   "Re-sign the current targets with a later expiry (run before they expire when nothing is published)",
		keyFlag: "targets-key", keyWhat: "targets",
		change: func(repo *tufrepo.Repo, _ []ed25519.PrivateKey) error { return repo.ResignTargets() },
	}.command()
}
