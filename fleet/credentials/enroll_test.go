package credentials

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/fleet/wire"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{Iterations: 10, Reserved: []string{"outpost-controller"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedeemOnce(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	tok, rec, err := s.IssueToken(ctx, TokenSpec{DeviceID: "press-12", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.Hash, tok[len(tok)-20:]) {
		t.Fatal("the record holds the token")
	}
	now := time.Now()
	id, secret, err := s.Redeem(ctx, tok, now)
	if err != nil || id != "press-12" {
		t.Fatalf("Redeem = %q, %v", id, err)
	}
	if err := s.Check(id, []byte(secret)); err != nil {
		t.Errorf("the issued secret does not log the device in: %v", err)
	}
	_, _, err = s.Redeem(ctx, tok, now)
	if !errors.Is(err, ErrTokenUsed) || !strings.Contains(err.Error(), "by device press-12") {
		t.Errorf("second Redeem: %v, want ErrTokenUsed naming the device", err)
	}
	if err := s.Check(id, []byte(secret)); err != nil {
		t.Errorf("a refused reuse must not touch the device's secret: %v", err)
	}
}

func TestRedeemRefusals(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	tok, _, err := s.IssueToken(ctx, TokenSpec{Prefix: "cam-", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tid, sec, _ := wire.ParseEnrollToken(tok)
	sec[0] ^= 1
	forged := wire.FormatEnrollToken(tid, sec)
	otherID := wire.FormatEnrollToken("AAAAAAAAAAAAAAAA", sec)
	for _, tc := range []struct {
		name, token string
		at          time.Time
		want        error
	}{
		{"forged secret", forged, time.Now(), ErrTokenUnknown},
		{"unknown id", otherID, time.Now(), ErrTokenUnknown},
		{"not a token", "hello", time.Now(), ErrTokenUnknown},
		{"expired", tok, time.Now().Add(2 * time.Minute), ErrTokenExpired},
	} {
		if _, _, err := s.Redeem(ctx, tc.token, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// None of the refusals spent it.
	id, _, err := s.Redeem(ctx, tok, time.Now())
	if err != nil || !strings.HasPrefix(id, "cam-") || len(id) != len("cam-")+enrollSuffixLen || wire.ValidDeviceID(id) != nil {
		t.Errorf("Redeem after refusals = %q, %v", id, err)
	}
}

func TestIssueTokenSpec(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for _, tc := range []struct {
		spec TokenSpec
		want string
	}{
		{TokenSpec{DeviceID: "a", Prefix: "b"}, "not both"},
		{TokenSpec{DeviceID: "a/b"}, "not allowed"},
		{TokenSpec{DeviceID: "outpost-controller"}, "reserved"},
		{TokenSpec{Prefix: strings.Repeat("p", 60)}, "at most"},
		{TokenSpec{TTL: -time.Hour}, "lifetime"},
		{TokenSpec{TTL: 10 * MaxTokenTTL}, "lifetime"},
	} {
		if _, _, err := s.IssueToken(ctx, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("IssueToken(%+v) = %v, want %q", tc.spec, err, tc.want)
		}
	}
	_, rec, err := s.IssueToken(ctx, TokenSpec{})
	if err != nil || rec.Prefix != DefaultEnrollPrefix || rec.Expires.Sub(rec.Issued) != DefaultTokenTTL {
		t.Errorf("default token: %+v, %v", rec, err)
	}
	ts, err := s.Tokens(ctx)
	if err != nil || len(ts) != 1 {
		t.Errorf("Tokens = %d, %v", len(ts), err)
	}
}

// TestRedeemRace: of many concurrent redemptions of one token exactly one wins.
func TestRedeemRace(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	tok, _, err := s.IssueToken(ctx, TokenSpec{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, used := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.Redeem(ctx, tok, time.Now())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrTokenUsed):
				used++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || used != 7 {
		t.Errorf("%d redemptions won, %d refused as used; want 1 and 7", wins, used)
	}
}
