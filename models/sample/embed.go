// Package sample holds the sample models the project trains itself (`make models`), embedded so
// that `outpost demo` needs no files beside the binary. Only the controller embeds them; the
// agent binary loads models from disk.
package sample

import "embed"

// FS holds every sample model (.tflite) and its manifest (.json), at the top level.
//
//go:embed *.tflite *.json
var FS embed.FS
