#!/usr/bin/env bash
# versitygw: an Apache-2.0 S3 server that checks SigV4 signatures, used by the tests in place of a fake.
# Built from the Go module proxy (no GitHub download), about 8 minutes cold; engines.sh caches the result.
#   usage (by scripts/engines.sh): versitygw.sh DIR      installs DIR/versitygw
set -euo pipefail
GOBIN="$(cd "$1" && pwd)" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
