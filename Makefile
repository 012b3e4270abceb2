# mcpguard's developer commands. `make test` needs Postgres on 127.0.0.1:5432
# (or MCPGUARD_TEST_DATABASE_URL); it starts nothing itself.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_TIMEOUT ?= 10m

.PHONY: demo test lint run build bench

# demo: the simulator, the server and one protection from a spec, step by step.
demo:
	bash scripts/demo.sh

test:
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./internal/workflow/...
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

lint:
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

run:
	$(GO) run ./cmd/server

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mcpguard ./cmd/server

bench:
	$(GO) test -run='^$$' -bench=. ./...
