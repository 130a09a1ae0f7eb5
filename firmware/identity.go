package firmware

import (
	"crypto/sha256"
	"encoding/hex"
)

// identityKeys are the config lines that point the agent at the bundle's identity.
func identityKeys(o Options) [][2]string {
	switch {
	case o.Secret != "":
		return [][2]string{{"password-file", SecretPath}}
	case o.EnrollToken != "":
		return [][2]string{{"enroll-token", TokenPath}}
	}
	return nil
}

// bundleDevice names the device part of a bundle: its id, or for an enrollment bundle
// without one "enroll-" and a digest of the token (never the token itself).
func bundleDevice(o Options) string {
	if o.DeviceID != "" {
		return o.DeviceID
	}
	sum := sha256.Sum256([]byte(o.EnrollToken))
	return "enroll-" + hex.EncodeToString(sum[:4])
}
