# Parley — the two commands a new user needs:
#   make run    set up this machine (Debian packages), build, and run the agent
#   make test   set up, build, and run every test (unit, sanitizers, real SIP peers, fuzzers)
# Everything else is a step of those two.

CONFIG ?= config/parley.toml
FUZZ_SECONDS ?= 30
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all setup build build-asan build-fuzz run test test-unit test-asan test-integration fuzz bench format clean

all: build

setup:
	scripts/setup

build:
	cmake --preset default >/dev/null
	cmake --build --preset default -j $(JOBS)

build-asan:
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)

build-fuzz:
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)

run: setup build
	scripts/run-parley $(CONFIG)

# The full suite: unit tests, the same unit tests under ASan+UBSan, the integration tests with real SIP
# peers on 127.0.0.1, and each fuzz target for FUZZ_SECONDS.
test: setup build build-asan build-fuzz
	scripts/run-tests

test-unit: build
	ctest --preset default -L unit -j $(JOBS) $(CTEST_ARGS)

test-asan: build-asan
	ctest --preset asan -j $(JOBS) $(CTEST_ARGS)

test-integration: build
	ctest --preset default -L integration $(CTEST_ARGS)

fuzz: build-fuzz
	FUZZ_SECONDS=600 scripts/run-fuzzers

bench: build
	scripts/run-bench

format:
	find src apps tests bench -name '*.cpp' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf build build-asan build-fuzz
