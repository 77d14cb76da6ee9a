# Latch. `make help` lists the targets.

SHELL       := /bin/bash
GO          ?= go
BIN         := $(CURDIR)/bin
# staticcheck 2026.2.2, which supports Go 1.26.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(BIN)/staticcheck-$(STATICCHECK_VERSION)
# Unit and in-process tests; e2e runs on its own (it needs the CPU for
# timing-sensitive checks).
UNIT_PKGS    = $(shell $(GO) list ./... | grep -v '/e2e$$')
TEST_TIMEOUT ?= 20m
E2E_TIMEOUT  ?= 30m

.PHONY: all help build deps test test-unit test-e2e lint demo demo-down bench churn clean

all: build

help:
	@echo "make build      build latch-coordinator, latchd and latch into bin/"
	@echo "make test       go vet, unit tests and end-to-end tests (e2e needs root)"
	@echo "make test-unit  unit tests only; make test-e2e: e2e only, verbose"
	@echo "make demo       start a coordinator and three agents in namespaces"
	@echo "make demo-down  stop the demo and remove everything it made"
	@echo "make bench      iperf3 through Latch, bare wireguard-go and veth; then make churn"
	@echo "make churn      500 ephemeral runners enrolling and leaving (docs/ephemeral.md)"
	@echo "make lint       go vet and staticcheck ($(STATICCHECK_VERSION))"
	@echo "make clean      remove bin/"

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

# Unit tests, then e2e against the binaries just built; both always run,
# and the target fails if either did.
test: deps build
	$(GO) vet ./...
	@rm -f $(BIN)/e2e-metrics.txt; rc=0; \
	echo "$(GO) test -count=1 -timeout $(TEST_TIMEOUT) <every package but ./e2e>"; \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(UNIT_PKGS) || rc=1; \
	echo "$(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./e2e   (measurements: bin/e2e-metrics.txt)"; \
	LATCH_BIN_DIR=$(BIN) LATCH_METRICS_FILE=$(BIN)/e2e-metrics.txt \
		$(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./e2e || rc=1; \
	exit $$rc

test-unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(UNIT_PKGS)

test-e2e: deps build
	LATCH_BIN_DIR=$(BIN) LATCH_METRICS_FILE=$(BIN)/e2e-metrics.txt \
		$(GO) test -count=1 -v -timeout $(E2E_TIMEOUT) ./e2e
	@cat $(BIN)/e2e-metrics.txt 2>/dev/null || true

# The Debian packages the tests use; installing needs root, and without
# root the e2e tests skip anyway.
deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/install-deps; fi

$(STATICCHECK):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(BIN)/staticcheck $@

lint: $(STATICCHECK)
	$(GO) vet ./...
	$(STATICCHECK) ./...

demo: build
	LATCH_BIN_DIR=$(BIN) scripts/demo

demo-down:
	scripts/demo-down

bench: build
	scripts/install-deps
	$(GO) build -o $(BIN)/wireguard-go golang.zx2c4.com/wireguard
	$(GO) build -o $(BIN)/latch-bench ./e2e/cmd/latch-bench
	$(BIN)/latch-bench -bin $(BIN)
	$(MAKE) churn

# Ephemeral churn: 500 runners through a real coordinator (docs/ephemeral.md);
# make test runs the same test with 40. Figures: bin/churn-metrics.txt.
CHURN_RUNNERS ?= 500
churn: build
	@rm -f $(BIN)/churn-metrics.txt
	LATCH_BIN_DIR=$(BIN) LATCH_METRICS_FILE=$(BIN)/churn-metrics.txt LATCH_CHURN_RUNNERS=$(CHURN_RUNNERS) \
		$(GO) test -count=1 -v -timeout 40m -run '^TestEphemeralChurn$$' ./e2e
	@cat $(BIN)/churn-metrics.txt

clean:
	rm -rf $(BIN)
