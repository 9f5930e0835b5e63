# Pulse Edge — the two commands: `make run` and `make test`.
# Both install what is missing (Debian 12, apt-get), so they work on a fresh machine
# and do nothing extra on a second run.

SHELL := /bin/bash
export CARGO_BUILD_JOBS ?= 2
CARGO ?= cargo

# What the server needs at build and run time.
RUN_PKGS := pkg-config gcc libc6-dev \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice
# What only the tests need: real publishers and players, and for bench/ (whose quick
# version is part of `make test`) the classic design we compare against (never part
# of the product) and the HTTP load generator.
# promtool (package prometheus) checks /metrics; python3-venv holds schemathesis, which fuzzes the admin API.
TEST_PKGS := ffmpeg chromium ca-certificates nginx-light libnginx-mod-rtmp wrk prometheus python3-venv openssl \
	gir1.2-gst-rtsp-server-1.0 python3-gi
SCHEMATHESIS_VERSION := 4.32.5
# The webhook tests verify our signatures with the reference Python implementation.
STANDARDWEBHOOKS_VERSION := 1.0.0

# Installs the Debian packages in $(1) that are not installed yet.
define apt_install
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  $$sudo env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: run deps test-deps build release test bench bench-quick fmt lint clean fuzz

run: deps release
	./target/release/pulse-edge serve

deps:
	$(call apt_install,$(RUN_PKGS))
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

test-deps: deps
	$(call apt_install,$(TEST_PKGS))
	$(call apt_install,$(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm))
	@if [ ! -d tests/player/node_modules ] || [ tests/player/package-lock.json -nt tests/player/node_modules ]; then \
	  npm ci --prefix tests/player --no-audit --no-fund --loglevel=error && touch tests/player/node_modules; \
	fi
	@if ! target/pyenv/bin/schemathesis --version 2>/dev/null | grep -q "$(SCHEMATHESIS_VERSION)"; then \
	  python3 -m venv target/pyenv && \
	  target/pyenv/bin/pip install -q --disable-pip-version-check "schemathesis==$(SCHEMATHESIS_VERSION)"; \
	fi
	@if ! target/pyenv/bin/pip show standardwebhooks 2>/dev/null | grep -q "^Version: $(STANDARDWEBHOOKS_VERSION)$$"; then \
	  target/pyenv/bin/pip install -q --disable-pip-version-check "standardwebhooks==$(STANDARDWEBHOOKS_VERSION)"; \
	fi

release:
	$(CARGO) build --release --locked

build:
	$(CARGO) build --locked

test: test-deps
	$(CARGO) test --locked --no-run
	$(CARGO) test --locked --lib --bins -- --test-threads=2
	# End-to-end tests start the real binary and real encoders: one at a time (2 cores).
	$(CARGO) test --locked --test '*' -- --test-threads=1
	# Smoke check of bench/ on the debug build, so the bench scripts cannot rot (the load client is
	# built with the test profile here; `make bench` builds it optimised).
	$(CARGO) test --locked --no-run --bench blocking_clients --bench llhls_players
	@export PULSE_BENCH_BIN=$(CURDIR)/target/debug/pulse-edge; $(BENCH_QUICK)

# Every figure for bench/RESULTS.md, one script each (about an hour, plus loadheld.py's 30 minutes per
# server; see bench/README.md).
# soak.py runs a 5-minute stream per server here; the issue's 30-minute version is `python3 bench/soak.py`.
bench: test-deps release
	$(CARGO) bench --locked --no-run --bench blocking_clients --bench llhls_players
	python3 bench/startup.py --repeats 5
	python3 bench/transcode.py --repeats 3 --seconds 30
	python3 bench/capacity.py
	python3 bench/latency.py --repeats 3 --seconds 30
	python3 bench/fanin.py --repeats 2 --seconds 20
	python3 bench/playlist.py
	python3 bench/soak.py --minutes 5 --settle-minutes 1
	python3 bench/storage.py --repeats 3 --seconds 60 --outage 60
	python3 bench/whip.py --repeats 3 --seconds 20 --warmup 8 --cpu-seconds 30
	python3 bench/hostile.py --seconds 30 --workers 4
	python3 bench/loadheld.py
	python3 bench/overload.py

# Every bench script in its short mode (under a minute): proves the scripts still work.
BENCH_QUICK = for s in startup transcode capacity latency fanin playlist soak storage whip hostile loadheld overload; do \
	  echo "== bench/$$s.py --quick"; python3 bench/$$s.py --quick || exit 1; done

bench-quick: test-deps release
	$(CARGO) bench --locked --no-run --bench blocking_clients --bench llhls_players
	@$(BENCH_QUICK)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Coverage-guided fuzzing: libFuzzer through cargo-fuzz on the stable toolchain, sanitizer
# off, every harness in fuzz/fuzz_targets/ for FUZZ_RUNS executions, one target after the
# other in a single process each. Each run starts from the saved corpus in
# testdata/fuzz/<target>/ (which `make test` replays, tests/fuzz_corpus.rs) plus a scratch
# corpus in fuzz/corpus/, and merges back only the inputs that add coverage. A crash stops
# here; its input is in fuzz/artifacts/<target>/. Its own target dir (fuzz/target), one
# build job at nice 19, so it does not starve other builds. The instrumented build of the
# whole crate takes a while the first time.
# Quick smoke run (about a minute once built): make fuzz FUZZ_RUNS=100000
# One target: make fuzz FUZZ_TARGETS=rtmp_chunk
FUZZ_RUNS ?= 10000000
FUZZ_TARGETS ?= $(sort $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs))))
FUZZ_BUILD := --sanitizer none --codegen-units 16
FUZZ_ARGS := -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

fuzz: deps
	$(call apt_install,g++)
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && CARGO_BUILD_JOBS=1 nice -n 19 $(CARGO) fuzz build $(FUZZ_BUILD)
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== $$t: $(FUZZ_RUNS) runs"; mkdir -p corpus/$$t; \
	  start=$$(date +%s); \
	  $(CARGO) fuzz run $(FUZZ_BUILD) $$t corpus/$$t ../testdata/fuzz/$$t -- \
	    -runs=$(FUZZ_RUNS) $(FUZZ_ARGS) 2>&1 | tee corpus/$$t.log | grep -E "^(INFO: Seed|Done [0-9]+ runs|stat::|==[0-9]+==|SUMMARY)|panicked|Test unit written"; \
	  status=$${PIPESTATUS[0]}; echo "== $$t: exit $$status after $$(( $$(date +%s) - start )) s"; \
	  [ "$$status" -eq 0 ] || exit $$status; \
	  $(CARGO) fuzz run $(FUZZ_BUILD) $$t ../testdata/fuzz/$$t corpus/$$t -- -merge=1 >corpus/$$t.merge.log 2>&1 || exit 1; \
	done
