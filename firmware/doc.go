// Package firmware will build flashable per-board bundles (cross-built agent binary, config,
// device identity, systemd unit, .deb). Until the firmware issue lands, `make cross` in the
// repository root produces the static agent binaries for every supported board.
package firmware
