# Slipway: `make run` sets up and starts the server; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := bin/slipway
# golangci-lint, pinned: `go run` builds it from the module cache (once; later runs reuse the built binary).
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
export SLIPWAY_ORT_LIB ?= $(HOME)/.cache/slipway/onnxruntime-1.30.0/libonnxruntime.so.1
export CGO_ENABLED := 1

.PHONY: ort run deps build examples engines test test-go test-python bench bench-models bench-batch bench-monitor bench-remote lint clean

run: deps build examples ## set up everything and start the server on 127.0.0.1:8080 (data in ./slipway-data)
	./$(BIN) server

deps: ## system packages (apt) and ONNX Runtime (npm)
	./scripts/install-deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/slipway

examples: ## train the example models (scikit-learn pickle, ONNX)
	./examples/build.sh

test: deps lint build examples engines test-python test-go ## every test: lint (layers), Go (race detector, end to end through the binary) and Python

# engines the tests start, built once into a cache (scripts/engines.sh)
ENGINES := versitygw kubernetes rootfs
engines:
	./scripts/engines.sh $(ENGINES)

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	# allocation counts only mean something without the race detector (its sync.Pool drops items at random)
	$(GO) test -count=1 -run 'Allocs' ./internal/...

test-python: build
	cd internal/modelruntime/python && /usr/bin/python3 -m unittest -v test_harness
	cd sdk/python && /usr/bin/python3 -m unittest -v test_sdk

bench: build examples ## serving: ceiling, Flask+gunicorn, ONNX, Python, batching (ratios in one run)
	./bench/run.sh

bench-models: build examples ## 300 lazy in-process ONNX deployments: server RSS, memory per deployment, cold starts, LRU unloading
	./bench/manymodels/run.sh 300

bench-batch: build examples ## 1M rows Parquet → PostgreSQL vs pandas + predict + COPY
	./bench/batch/run.sh

bench-remote: build examples ## network replicas (slipway worker serve over TCP) vs local pipes, ONNX and Python, c=32
	./bench/remote.sh

bench-monitor: build examples ## drift on 1M rows × 20 features vs numpy/scipy; capture overhead on serving
	./bench/monitor/run.sh

lint: ## golangci-lint (.golangci.yml): vet, staticcheck, errcheck, ineffassign, unused and the layer rules
	$(GO) run $(GOLANGCI_LINT) run ./...

clean:
	rm -rf bin

ort: ## ONNX Runtime shared library only
	./scripts/install-ort.sh
