# Outpost: `make` lists the targets. `make demo` runs the main job, `make test` the tests.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin
# Packages with goroutines run under the race detector; the interpreter and model packages are
# single-threaded and run without it (the conformance corpus is slow under -race).
RACE_PKGS := ./agent/... ./fleet/... ./cmd/... ./internal/...
PLAIN_PKGS := ./models/... ./firmware/...
FUZZTIME ?= 30s
KILLS ?= 200

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets with a one-line description
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build outpost and outpost-agent for this machine into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/outpost ./cmd/outpost-agent

.PHONY: demo
# Built, then run, rather than `go run`: go run exits 1 whenever it sees Ctrl-C, even when the
# demo itself stops cleanly and exits 0.
demo: ## Run a controller and 3 simulated devices on this machine (Ctrl-C stops)
	@CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/outpost ./cmd/outpost
	$(BIN)/outpost demo

.PHONY: deps
deps: ## Install what the tests need from Debian (mosquitto, chromium, qemu-user-static) when it is missing
	@scripts/ensure-deps

# The critical path is cmd/outpost under -race. Its end-to-end tests (real binaries, Mosquitto,
# PostgreSQL, chromium, qemu) mostly wait on other processes and timers, so they run in
# parallel (at most GOMAXPROCS at once), and the package starts building outpost and
# outpost-agent as its tests start, alongside the in-process ones.
.PHONY: test
test: deps lint ## Run every test: gofmt, go vet, unit, conformance, race, interop, fault and cross-arch tests
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 20m $(PLAIN_PKGS)
	@# 200 simulated devices and a broker restart mid-rollout: too slow under -race, and mochi's
	@# retained index races a concurrent subscribe there (fleet/rollout/race_on_test.go).
	$(GO) test -count=1 -run '^TestFleetOverBroker$$' ./fleet/rollout
	@$(MAKE) --no-print-directory test-kernels

# The interpreter's integer results must be identical on every path: the AVX2 kernels (amd64,
# with their VNNI form where the CPU has it),
# the NEON kernels (arm64, under qemu-user, installed by scripts/ensure-deps), and the pure-Go
# kernels forced on both, plus 32-bit ARM, which has only the pure-Go path.
.PHONY: test-kernels
test-kernels: ## Run the interpreter tests on the portable path and under qemu for arm64 and armv7
	OUTPOST_PORTABLE=1 $(GO) test -count=1 ./models/tflite/...
	GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static ./models/tflite/...
	OUTPOST_PORTABLE=1 GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static ./models/tflite/...
	GOARCH=arm GOARM=7 $(GO) test -count=1 -exec qemu-arm-static ./models/tflite/...
	# An amd64 CPU without VNNI (QEMU's TCG emulates none) must get the AVX2 GEMM, exactly.
	GOARCH=amd64 $(GO) test -count=1 -exec 'qemu-x86_64-static -cpu Haswell' -run 'KernelPathFollowsCPU|DotProductSetting|FCInt8PathsMatchReference' ./models/tflite/kernels

.PHONY: lint
lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: torture
torture: ## Kill the real agent with SIGKILL KILLS times (default 200) and check exactly-once; SEED=n replays
	$(GO) test -count=1 -timeout 60m -run '^TestCrashTorture$$' -v ./agent/faulttest -kills $(KILLS) $(if $(SEED),-seed $(SEED))

.PHONY: bench
bench: ## Run the benchmarks, durable buffer appends, the 1,000,000-result drain and the vision footprint (figures go to docs/performance.md)
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 5 ./... | tee bench.txt
	@echo '== buffer: durable appends, 5 runs of 100,000 results (issue 5: >= 20,000 results/s)'
	@set -o pipefail; $(GO) test -run '^$$' -bench AppendDurable -benchtime 100000x -count 5 ./agent/boltbuf | tee -a bench.txt | \
	  awk '$$6 == "results/s" { print; k = $$1; n[k]++; v[k, n[k]] = $$5 } \
	    END { for (k in n) { for (i = 2; i <= n[k]; i++) for (j = i; j > 1 && v[k, j-1] > v[k, j]; j--) { t = v[k, j]; v[k, j] = v[k, j-1]; v[k, j-1] = t } \
	      printf "median %s: %d results/s\n", k, v[k, int((n[k] + 1) / 2)] } }'
	@echo '== backlog: 1,000,000 buffered results drained to a loopback broker (issue 5: <= 60 s)'
	@set -o pipefail; OUTPOST_DRAIN_N=1000000 $(GO) test -count 1 -run TestBacklogDrain -v ./cmd/outpost-agent | tee -a bench.txt | \
	  grep -E 'filled|drained|health reports|^(--- |ok|FAIL)'
	@echo '== the agent with a MobileNet v2-class int8 model at 1 inference/s, 40 s: resident set (issue 14)'
	@set -o pipefail; OUTPOST_VISION_FOOTPRINT=1 $(GO) test -count 1 -run '^TestVisionFootprint$$' -v ./cmd/outpost-agent | tee -a bench.txt | \
	  grep -E 'vision_footprint|^(--- |ok|FAIL)'
	@echo '== the same on the pure-Go kernels, what riscv64 runs (OUTPOST_PORTABLE=1)'
	@set -o pipefail; OUTPOST_PORTABLE=1 OUTPOST_VISION_FOOTPRINT=1 $(GO) test -count 1 -run '^TestVisionFootprint$$' -v ./cmd/outpost-agent | tee -a bench.txt | \
	  grep -E 'vision_footprint|^(--- |ok|FAIL)'

# Not part of make test or make bench: minutes of load on the whole machine. Run it on a quiet
# machine; it prints the load average with every figure. OUTPOST_SCALE_* variables shrink it
# (see cmd/outpost/scale_test.go).
.PHONY: bench-scale
bench-scale: ## Scale figures: 1,000 devices x 10 results/s for 60 s into outpost serve, 100 real agents, 10,000 idle devices (RSS, ack lag)
	@set -o pipefail; OUTPOST_SCALE=1 $(GO) test -count=1 -timeout 30m -run '^TestScale$$' -v ./cmd/outpost | tee bench-scale.txt | \
	  grep -E 'machine:|load:|postgres:|agents:|idle:|^(--- |ok|FAIL)'

# Not part of make test or make bench: a timed figure that means something only on a quiet
# machine. OUTPOST_THREADS_ROUNDS and OUTPOST_THREADS_N change the rounds and Invokes per round.
.PHONY: bench-threads
bench-threads: ## Issue 14's threads figure: MobileNet v2 224x224 int8, 2 threads / 1 thread, alternating rounds, median ratio, and by the host's vCPU placement
	@set -o pipefail; OUTPOST_THREADS_RATIO=1 $(GO) test -count=1 -run '^TestThreadsRatio$$' -v ./models/tflite/synth | \
	  grep -E 'kernels|round|median|^(--- |ok|FAIL)'

.PHONY: bench-oracle
bench-oracle: ## Time person_detect and single-layer shapes against the official TFLite runtime side by side (needs Node.js)
	scripts/bench-vs-oracle
	scripts/bench-oracle-shapes

# The committed seed corpora (testdata/fuzz) are replayed by `go test` in `make test`: that is the
# deterministic gate. `make fuzz` explores beyond them and fails only on a real finding.
.PHONY: fuzz
fuzz: ## Fuzz every target for FUZZTIME (default 30s; 10m for long runs; ci = per-target exec counts). Seeds replay in make test
	@scripts/fuzz-all $(FUZZTIME)

.PHONY: cross
cross: ## Build outpost-agent for linux amd64, arm64, armv6, armv7, riscv64 (CGO off)
	@set -e; for t in amd64: arm64: arm:6 arm:7 riscv64:; do \
	  arch=$${t%%:*}; arm=$${t#*:}; out=$(BIN)/outpost-agent-linux-$$arch$${arm:+v$$arm}; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/outpost-agent; \
	  printf '%-40s %s bytes\n' $$out $$(stat -c %s $$out); \
	done

.PHONY: models
models: ## Regenerate the sample models under models/sample (byte-identical)
	$(GO) run ./models/train/cmd/outpost-train -out models/sample

.PHONY: retrain-from-capture
CAPTURE ?= capture-export
RETRAINED ?= retrained
retrain-from-capture: ## Retrain the sample vibration model on CAPTURE=DIR (outpost capture export) into RETRAINED=DIR
	$(GO) run ./models/train/cmd/outpost-train -from-capture $(CAPTURE) -out $(RETRAINED)

.PHONY: eval-drift
eval-drift: ## Measure drift detection on the simulated sensors and rewrite the table in docs/monitoring.md
	timeout 600 $(GO) run ./agent/drift/internal/evaldrift -doc docs/monitoring.md

.PHONY: clean
clean: ## Remove build outputs
	rm -rf $(BIN) bench.txt bench-scale.txt
