# mcpguard's developer commands. `make test` needs Postgres on 127.0.0.1:5432
# (or MCPGUARD_TEST_DATABASE_URL); it starts nothing itself.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_TIMEOUT ?= 10m

.PHONY: demo test lint run build image bench fuzz

# demo: the simulator, the server and one protection from examples/, step by
# step, through mcpguardctl. DEMO_FLAGS=--trust-local-postgres lets it add a
# trust line for user postgres to pg_hba.conf; without it nothing is edited.
demo:
	bash scripts/demo.sh $(DEMO_FLAGS)

# test: every package under the race detector.
test:
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

lint:
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

run:
	$(GO) run ./cmd/server

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mcpguard ./cmd/server
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mcpguardctl ./cmd/mcpguardctl

# image: the server image localhost/mcpguard:dev and the simulator's
# localhost/mcpguard-sim:dev, with podman (preferred: no daemon) or docker.
# BUILDAH_FORMAT=docker keeps the HEALTHCHECK, which the OCI format drops.
# GO_IMAGE / RUNTIME_IMAGE override the base images (README).
CONTAINER ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null || echo podman)
IMAGE_ARGS = $(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(RUNTIME_IMAGE),--build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE))
image:
	BUILDAH_FORMAT=docker $(CONTAINER) build $(IMAGE_ARGS) --target server -t localhost/mcpguard:dev .
	BUILDAH_FORMAT=docker $(CONTAINER) build $(IMAGE_ARGS) --target anypoint-sim -t localhost/mcpguard-sim:dev .

# bench: end-to-end throughput (POST to succeeded, instant simulator), each
# step's overhead beyond a 20 ms upstream latency, API p50/p99 under 4
# clients, the scheduling ratios (lone job vs a straight-line script, burst,
# fairness), 429s under the shared budget with 3 replicas, GET and list with
# 1,000,000 rows, memory with 1,000 in flight, then the api and workflow
# packages' own benchmarks; ~5 minutes on 2 cores. Figures only: nothing
# here asserts a time. A short summary ends it.
BENCH_E2E = $(GO) test -run='^$$' ./internal/e2e
bench:
	@{ $(BENCH_E2E) -bench='^BenchmarkProtectionThroughput$$' -benchtime=10x; \
	  $(BENCH_E2E) -bench='^BenchmarkStepOverhead$$' -benchtime=20x; \
	  $(BENCH_E2E) -bench='^BenchmarkAPILatency$$' -benchtime=500x; \
	  $(BENCH_E2E) -bench='^BenchmarkScheduling$$' -benchtime=1x -timeout=20m; \
	  $(BENCH_E2E) -bench='^BenchmarkSharedBudget$$' -benchtime=1x -timeout=20m; \
	  $(BENCH_E2E) -bench='^BenchmarkLargeTable$$' -benchtime=500x -timeout=20m; \
	  $(BENCH_E2E) -bench='^BenchmarkInFlightMemory$$' -benchtime=1x -timeout=20m; \
	  $(GO) test -run='^$$' -bench=. -benchtime=200x ./internal/api ./internal/workflow; \
	} 2>&1 | awk -v cores="$$(nproc 2>/dev/null || echo ?)" ' \
	{ print } \
	/^(FAIL|--- FAIL|panic:)/ { failed = 1 } \
	/^Benchmark/ { \
	  name = $$1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$$/, "", name); seen[name] = 1; steps = ""; \
	  for (i = 3; i < NF; i += 2) { \
	    m[name, $$(i+1)] = $$i; \
	    if ($$(i+1) ~ /^ms-overhead\// && $$(i+1) !~ /\/(step|job|call)$$/) { s = $$(i+1); sub(/^ms-overhead\//, "", s); steps = steps " " s "=" $$i } \
	  } \
	  if (steps != "") stepList = steps \
	} \
	END { \
	  if (failed) { print "make bench: a benchmark failed"; exit 1 } \
	  printf "\nSummary (%s cores):\n", cores; \
	  for (w = 1; w <= 64; w++) { n = "ProtectionThroughput/workers=" w; if (n in seen) \
	    printf "  throughput, %d workers, instant Anypoint: %s protections/s (job p50 %s ms, p99 %s ms)\n", w, m[n, "jobs/s"], m[n, "ms-job-p50"], m[n, "ms-job-p99"] } \
	  n = "StepOverhead"; if (n in seen) { \
	    printf "  overhead beyond %s ms/call upstream latency: %s ms per step, %s ms per call, %s ms hand-off between steps (%s calls/job)\n", m[n, "ms-upstream/call"], m[n, "ms-overhead/step"], m[n, "ms-overhead/call"], m[n, "ms-handoff/step"], m[n, "calls/job"]; \
	    printf "    per step (ms):%s\n", stepList } \
	  n = "APILatency/GET"; if (n in seen) printf "  GET /protections/{id}, 4 clients: p50 %s ms, p99 %s ms (%s req/s)\n", m[n, "ms-p50"], m[n, "ms-p99"], m[n, "req/s"]; \
	  n = "APILatency/POST"; if (n in seen) printf "  POST /protections, 4 clients: p50 %s ms, p99 %s ms (%s req/s)\n", m[n, "ms-p50"], m[n, "ms-p99"], m[n, "req/s"]; \
	  n = "GetProtection"; if (n in seen) printf "  api package, one client: GET %.2f ms", m[n, "ns/op"] / 1e6; \
	  n = "CreateProtection"; if (n in seen) printf ", POST %.2f ms\n", m[n, "ns/op"] / 1e6; \
	  n = "EngineThroughput"; if (n in seen) printf "  engine alone (two no-op steps): %s jobs/s\n", m[n, "jobs/s"]; \
	  n = "Scheduling"; if (n in seen) { \
	    printf "  lone job at 20 ms/call: %s ms = %s x the straight-line script (%s ms)\n", m[n, "ms-lone"], m[n, "lone/script"], m[n, "ms-script"]; \
	    printf "  burst of 100: p50 %s x lone, p99 %s x lone\n", m[n, "burst-p50/lone"], m[n, "burst-p99/lone"]; \
	    printf "  tenant B behind tenant A'"'"'s 500: %s x lone (%s ms)\n", m[n, "fairness/lone"], m[n, "ms-fairness"] } \
	  n = "SharedBudget"; if (n in seen) printf "  3 replicas, 300 protections, Anypoint limited to 2000 calls per 10 s per organization: %s x 429 (busiest second %s calls; %s calls/s, %s protections/s)\n", m[n, "429s"], m[n, "peak-calls/window"], m[n, "calls/s"], m[n, "jobs/s"]; \
	  n = "LargeTable/GET"; if (n in seen) printf "  1,000,000 rows: GET /protections/{id} p50 %s ms, p99 %s ms", m[n, "ms-p50"], m[n, "ms-p99"]; \
	  n = "LargeTable/list-failed"; if (n in seen) printf "; ?state=failed p50 %s ms, p99 %s ms", m[n, "ms-p50"], m[n, "ms-p99"]; \
	  n = "LargeTable/claim"; if (n in seen) printf "; idle claim p50 %s ms, p99 %s ms (on the live-jobs index: %s)\n", m[n, "ms-p50"], m[n, "ms-p99"], (m[n, "on-live-index"] == 1 ? "yes" : "NO"); \
	  n = "InFlightMemory"; if (n in seen) printf "  1,000 protections in flight (%s at verify): RSS %s MB (heap %s MB, %s goroutines; simulator and client in the same process)\n", m[n, "at-verify"], m[n, "MB-rss"], m[n, "MB-heap"], m[n, "goroutines"] \
	}'

# fuzz: the decoders' Go fuzz tests for FUZZTIME each (go test runs only
# their seed corpus, testdata/fuzz), then FUZZ_BODIES generated bodies
# against a running server (real router and Postgres): no 5xx, no row for a
# refused request. Set FUZZ_SEED to replay a run.
FUZZTIME    ?= 2m
FUZZ_BODIES ?= 10000
FUZZ_SEED   ?= 7
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeCreate$$' -fuzztime=$(FUZZTIME) ./internal/api/strictjson
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRetry$$' -fuzztime=$(FUZZTIME) ./internal/api/strictjson
	MCPGUARD_FUZZ_BODIES=$(FUZZ_BODIES) MCPGUARD_FUZZ_SEED=$(FUZZ_SEED) \
	  $(GO) test -count=1 -timeout 30m -run='^TestFuzzRunningServer$$' -v ./internal/api
