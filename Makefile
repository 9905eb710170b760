# Slipway: `make run` sets up and starts the server; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := bin/slipway
# golangci-lint, pinned: `go run` builds it from the module cache (once; later runs reuse the built binary).
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
export SLIPWAY_ORT_LIB ?= $(HOME)/.cache/slipway/onnxruntime-1.30.0/libonnxruntime.so.1
export CGO_ENABLED := 1

.PHONY: ort run deps build examples engines test test-go test-python bench bench-models bench-batch bench-monitor bench-remote bench-grpc bench-cluster bench-kube lint clean proto

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
	$(GO) test -race -count=1 -timeout 60m ./...
	# allocation counts only mean something without the race detector (its sync.Pool drops items at random)
	$(GO) test -count=1 -run 'Allocs' ./internal/...

test-python: build
	cd internal/modelruntime/python && /usr/bin/python3 -m unittest -v test_harness
	cd sdk/python && /usr/bin/python3 -m unittest -v test_sdk test_prepare test_notebook test_mlflow_load

bench: build examples ## serving: ceiling, Flask+gunicorn, FastAPI+uvicorn, ONNX, Python, batching (ratios in one run)
	./bench/run.sh

bench-models: build examples ## 300 lazy in-process ONNX deployments: server RSS, memory per deployment, cold starts, LRU unloading
	./bench/manymodels/run.sh 300

bench-batch: build examples ## 1M rows Parquet → PostgreSQL vs pandas + predict + COPY
	./bench/batch/run.sh

bench-remote: build examples ## network replicas (slipway worker serve over TCP) vs local pipes: ONNX, Python, fast Python; c=32
	./bench/remote.sh

bench-kube: build examples ## Kubernetes pods (replicas over TCP) vs local pipes, ONNX and Python, c=32; deploy → ACTIVE; kill -9 → serving
	SLIPWAY_BENCH_KUBE=1 go test -count=1 -timeout 40m -run '^TestBenchKube$$' -v ./e2e/  # SLIPWAY_BENCH_KUBE_CPU=0: BestEffort pods

bench-grpc: build examples ## Open Inference Protocol over gRPC vs HTTP V2 JSON, ONNX, c=32 (ratios in one run)
	./bench/grpc.sh

bench-cluster: build examples ## 1 vs 2 servers (PostgreSQL + versitygw): API and prediction throughput, kill -9 → first answer
	SLIPWAY_BENCH_CLUSTER=1 go test -count=1 -timeout 30m -run '^TestBenchCluster$$' -v ./e2e/

bench-monitor: build examples ## drift on 1M rows × 20 features vs numpy/scipy; capture overhead on serving
	./bench/monitor/run.sh

lint: ## golangci-lint (.golangci.yml): vet, staticcheck, errcheck, ineffassign, unused and the layer rules
	$(GO) run $(GOLANGCI_LINT) run ./...

clean:
	rm -rf bin

# The Open Inference Protocol's gRPC service: Go code generated from the KServe proto, committed (so a build
# needs no protoc). protoc is Debian's protobuf-compiler; the plugins are pinned and built from the Go proxy.
PROTO := internal/inference/inferencepb/grpc_predict_v2.proto
PROTOC_PLUGINS := $(CURDIR)/bin/protoc-plugins
proto: ## regenerate internal/inference/inferencepb from its .proto (needs protoc)
	GOBIN=$(PROTOC_PLUGINS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$(PROTOC_PLUGINS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	PATH="$(PROTOC_PLUGINS):$$PATH" protoc -I $(dir $(PROTO)) --go_out=$(dir $(PROTO)) --go_opt=paths=source_relative \
		--go-grpc_out=$(dir $(PROTO)) --go-grpc_opt=paths=source_relative $(PROTO)

ort: ## ONNX Runtime shared library only
	./scripts/install-ort.sh
