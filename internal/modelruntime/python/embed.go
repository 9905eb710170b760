// Package python ships the harness that runs a `python` runtime model (score.py) in a replica process.
package python

import _ "embed"

// Harness is harness.py: `serve --model-dir DIR` speaks docs/worker-protocol.md on stdin/stdout;
// `inspect --model-dir DIR --packages a,b` prints what registration checks need without importing score.py.
//
//go:embed harness.py
var Harness []byte
