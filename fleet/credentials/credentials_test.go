package credentials

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// testdata/mosquitto_passwd.txt was written by Debian's mosquitto_passwd 2.0.11
// (-H sha512-pbkdf2, and -I 20000 for gw.01) with the passwords below.
func TestVerifyMosquittoHashes(t *testing.T) {
	passwords := map[string]string{"dev1": "secret", "sensor-7": "correct horse", "gw.01": "x"}
	f, err := os.Open("testdata/mosquitto_passwd.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		user, hash, _ := strings.Cut(sc.Text(), ":")
		ok, err := Verify(hash, []byte(passwords[user]))
		if err != nil || !ok {
			t.Errorf("Verify(%s's hash, right password) = %v, %v; want true", user, ok, err)
		}
		if ok, err := Verify(hash, []byte(passwords[user]+"!")); err != nil || ok {
			t.Errorf("Verify(%s's hash, wrong password) = %v, %v; want false", user, ok, err)
		}
		n++
	}
	if n != len(passwords) {
		t.Fatalf("read %d hashes, want %d", n, len(passwords))
	}
}

func TestHashRoundTrip(t *testing.T) {
	h, err := Hash([]byte("pw"), 101)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$7$101$") || len(h) != len("$7$101$")+16+1+88 {
		t.Fatalf("Hash = %q, want $7$101$ + 16 salt + $ + 88 hash characters", h)
	}
	if ok, err := Verify(h, []byte("pw")); !ok || err != nil {
		t.Fatalf("Verify(own hash) = %v, %v", ok, err)
	}
	if _, err := Hash([]byte("pw"), 0); err == nil {
		t.Fatal("Hash with 0 iterations: no error")
	}
}

func TestParseHashRejects(t *testing.T) {
	good, _ := Hash([]byte("pw"), 5)
	parts := strings.Split(good, "$") // "", "7", "5", salt, hash
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"sha512 format 6", "$6$" + parts[3] + "$" + parts[4]},
		{"missing field", "$7$5$" + parts[3]},
		{"extra field", good + "$x"},
		{"zero iterations", "$7$0$" + parts[3] + "$" + parts[4]},
		{"huge iterations", "$7$99999999999$" + parts[3] + "$" + parts[4]},
		{"leading zero", "$7$05$" + parts[3] + "$" + parts[4]},
		{"negative", "$7$-5$" + parts[3] + "$" + parts[4]},
		{"bad salt", "$7$5$!!!!$" + parts[4]},
		{"empty salt", "$7$5$$" + parts[4]},
		{"short hash", "$7$5$" + parts[3] + "$" + parts[3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(tc.in, []byte("pw")); !errors.Is(err, ErrBadHash) {
				t.Fatalf("Verify(%q) error = %v, want ErrBadHash", tc.in, err)
			}
		})
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add("$7$101$AV9X2Z4Z6jaPc2Li$FLFEW6Fwqv2u0gqo+L736sgars2E99fCmIvhwn/rGEvksY6ORHyjZWAWKWa5zwWS6lFxRbsGxdvt9VPtt5i/Gw==")
	f.Add("$7$$$")
	f.Add("$6$abc$def")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseHash(s)
		if err != nil {
			if !errors.Is(err, ErrBadHash) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("parseHash error %q: want one line wrapping ErrBadHash", err)
			}
			return
		}
		if p.iterations < 1 || p.iterations > maxIterations || len(p.key) != keyLen || len(p.salt) == 0 {
			t.Fatalf("parseHash(%q) accepted %+v", s, p)
		}
	})
}

func TestIssueCheckRevoke(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{Iterations: 1000, Reserved: []string{"ctl"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Issue(ctx, "ctl"); !errors.Is(err, ErrReserved) {
		t.Fatalf("Issue(reserved) = %v, want ErrReserved", err)
	}
	if err := s.Check("dev-a", []byte("x")); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Check(unknown) = %v, want ErrUnknown", err)
	}
	if _, err := s.Issue(ctx, "bad/id"); err == nil {
		t.Fatal("Issue(bad/id): no error")
	}
	secret, err := s.Issue(ctx, "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 43 {
		t.Fatalf("secret %q: want 43 base64url characters", secret)
	}
	for i := range 2 { // the second check hits the verified cache
		if err := s.Check("dev-a", []byte(secret)); err != nil {
			t.Fatalf("Check(right secret) #%d = %v", i, err)
		}
		if err := s.Check("dev-a", []byte(secret[1:])); !errors.Is(err, ErrPassword) {
			t.Fatalf("Check(wrong secret) #%d = %v, want ErrPassword", i, err)
		}
	}
	if err := s.Check("dev-b", []byte(secret)); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Check(dev-b, dev-a's secret) = %v, want ErrUnknown", err)
	}
	pw, err := s.MosquittoPasswd(ctx)
	if err != nil || !strings.HasPrefix(string(pw), "dev-a:$7$1000$") || strings.Count(string(pw), "\n") != 1 {
		t.Fatalf("MosquittoPasswd = %q, %v", pw, err)
	}
	if strings.Contains(string(pw), secret) {
		t.Fatal("password file holds the secret itself")
	}

	if err := s.Revoke(ctx, "dev-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Check("dev-a", []byte(secret)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Check after revoke = %v, want ErrRevoked", err)
	}
	if err := s.Revoke(ctx, "cert-only"); err != nil {
		t.Fatal(err)
	}
	if !s.Revoked("dev-a") || !s.Revoked("cert-only") || s.Revoked("dev-b") {
		t.Fatal("Revoked: want dev-a and cert-only revoked, dev-b not")
	}
	if pw, _ := s.MosquittoPasswd(ctx); len(pw) != 0 {
		t.Fatalf("MosquittoPasswd after revoke = %q, want empty", pw)
	}

	// Revocations and secrets survive a restart; a new secret lifts the revocation and the
	// old secret stays dead.
	s.Close()
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check("dev-a", []byte(secret)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Check after reopen = %v, want ErrRevoked", err)
	}
	secret2, err := s.Issue(ctx, "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check("dev-a", []byte(secret2)); err != nil {
		t.Fatalf("Check(new secret) = %v", err)
	}
	if err := s.Check("dev-a", []byte(secret)); !errors.Is(err, ErrPassword) {
		t.Fatalf("Check(old secret) = %v, want ErrPassword", err)
	}
	rs, err := s.List(ctx)
	if err != nil || len(rs) != 2 || rs[0].ID != "cert-only" || rs[1].ID != "dev-a" || !rs[1].Revoked.IsZero() {
		t.Fatalf("List = %+v, %v", rs, err)
	}
}
