package wire

import (
	"bytes"
	"strings"
	"testing"
)

var testToken = FormatEnrollToken("AAECAwQFBgcICQoL", bytes.Repeat([]byte{7}, TokenSecretBytes))

func TestEnrollTokenRoundTrip(t *testing.T) {
	id, sec, err := ParseEnrollToken(testToken)
	if err != nil || id != "AAECAwQFBgcICQoL" || !bytes.Equal(sec, bytes.Repeat([]byte{7}, TokenSecretBytes)) {
		t.Fatalf("ParseEnrollToken(%q) = %q, %x, %v", testToken, id, sec, err)
	}
	for _, bad := range []string{"", "oet1.", testToken[:len(testToken)-1], testToken + "A", strings.Replace(testToken, "oet1", "oet2", 1),
		strings.Replace(testToken, ".", "-", 2), testToken[:len(testToken)-1] + "=", testToken[:len(testToken)-1] + "B"} {
		if _, _, err := ParseEnrollToken(bad); err != ErrTokenFormat {
			t.Errorf("ParseEnrollToken(%q) = %v, want ErrTokenFormat", bad, err)
		}
	}
}

func TestEnrollTopics(t *testing.T) {
	s := strings.Repeat("ab", 16)
	if got, ok := ParseEnrollRequestTopic(EnrollRequestTopic(s)); !ok || got != s {
		t.Errorf("request topic round trip: %q %v", got, ok)
	}
	for _, bad := range []string{EnrollResponseTopic(s), EnrollRequestTopic("AB" + s[2:]), EnrollRequestTopic(s[1:]), EnrollRequestTopic("+"), "outpost/v1/d/x/state", EnrollRoot + "/" + s + "/req/x"} {
		if _, ok := ParseEnrollRequestTopic(bad); ok {
			t.Errorf("ParseEnrollRequestTopic(%q) accepted", bad)
		}
	}
	if strings.HasPrefix(EnrollResponseTopic(s), Root) || strings.HasPrefix(EnrollResponseTopic(s), "outpost/") {
		t.Error("enrollment topics must stay outside outpost/ (observers read outpost/#)")
	}
	if ValidDeviceID(EnrollUser) == nil {
		t.Error("EnrollUser must not be a valid device id")
	}
}

func TestDecodeEnroll(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string // want "" means valid
		decode           func([]byte) error
	}{
		{"request", `{"v":1,"token":"` + testToken + `","agent":"v1.0"}`, "", req},
		{"request forged shape", `{"v":1,"token":"oet1.x.y"}`, "not an enrollment token", req},
		{"request no version", `{"token":"` + testToken + `"}`, "missing schema version", req},
		{"request agent newline", `{"v":1,"token":"` + testToken + `","agent":"a\nb"}`, "printable", req},
		{"request huge", `{"v":1,"token":"` + strings.Repeat("x", MaxEnrollMessage) + `"}`, "at most", req},
		{"response ok", `{"v":1,"id":"press-12","secret":"abc_DEF-1"}`, "", resp},
		{"response refusal", `{"v":1,"code":"used","reason":"token already used"}`, "", resp},
		{"response refusal with secret", `{"v":1,"code":"used","reason":"x","secret":"s"}`, "no credentials", resp},
		{"response bad id", `{"v":1,"id":"a/b","secret":"s"}`, "device id", resp},
		{"response no secret", `{"v":1,"id":"a"}`, "secret", resp},
		{"response secret space", `{"v":1,"id":"a","secret":"a b"}`, "printable", resp},
		{"response reason newline", `{"v":1,"code":"x","reason":"a\nb"}`, "one short printable line", resp},
		{"response v2", `{"v":2,"id":"a","secret":"s"}`, "unsupported schema version", resp},
		{"identity", `{"v":1,"id":"press-12","secret":"s3cret"}`, "", ident},
		{"identity empty", `{"v":1}`, "device id", ident},
		{"identity garbage", `{"v":1,`, "decode", ident},
	} {
		err := tc.decode([]byte(tc.data))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", tc.name, err)
		}
	}
}

func req(b []byte) error   { _, err := DecodeEnrollRequest(b); return err }
func resp(b []byte) error  { _, err := DecodeEnrollResponse(b); return err }
func ident(b []byte) error { _, err := DecodeIdentity(b); return err }

func TestEncodeEnrollRoundTrip(t *testing.T) {
	in := Identity{DeviceID: "d-1", Secret: "xyz"}
	b, err := EncodeEnroll(&in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIdentity(b)
	if err != nil || got != (Identity{V: 1, DeviceID: "d-1", Secret: "xyz"}) {
		t.Errorf("identity round trip: %+v %v", got, err)
	}
	if _, err := EncodeEnroll(&State{}); err == nil {
		t.Error("EncodeEnroll accepted a State")
	}
}

// FuzzDecodeEnroll feeds one input to every enrollment decoder: none may panic, and whatever
// one accepts must encode and decode back to itself.
func FuzzDecodeEnroll(f *testing.F) {
	f.Add([]byte(`{"v":1,"token":"` + testToken + `"}`))
	f.Add([]byte(`{"v":1,"id":"press-12","secret":"abc"}`))
	f.Add([]byte(`{"v":1,"code":"expired","reason":"token expired at 2026-01-01T00:00:00Z"}`))
	f.Add([]byte(testToken))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := DecodeEnrollRequest(data); err == nil {
			b, err := EncodeEnroll(&r)
			if err != nil {
				t.Fatal(err)
			}
			if r2, err := DecodeEnrollRequest(b); err != nil || r2 != r {
				t.Fatalf("request round trip: %+v -> %+v, %v", r, r2, err)
			}
		}
		if r, err := DecodeEnrollResponse(data); err == nil {
			b, err := EncodeEnroll(&r)
			if err != nil {
				t.Fatal(err)
			}
			if r2, err := DecodeEnrollResponse(b); err != nil || r2 != r {
				t.Fatalf("response round trip: %+v -> %+v, %v", r, r2, err)
			}
		}
		if id, err := DecodeIdentity(data); err == nil {
			b, err := EncodeEnroll(&id)
			if err != nil {
				t.Fatal(err)
			}
			if id2, err := DecodeIdentity(b); err != nil || id2 != id {
				t.Fatalf("identity round trip: %+v -> %+v, %v", id, id2, err)
			}
		}
		if id, sec, err := ParseEnrollToken(string(data)); err == nil && FormatEnrollToken(id, sec) != string(data) {
			t.Fatalf("token %q does not format back", data)
		}
	})
}
