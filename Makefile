# Thin wrapper over CMake: `make run` and `make test` are the two first commands.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test run format clean asan tsan

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	@echo "== CUnit suites (summary; each suite also runs under ctest)"
	@$(BUILD)/tests/mc_tests 2>/dev/null | sed -n '/Run Summary/,$$p'
	cd $(BUILD) && ctest --output-on-failure --timeout 900

run: build
	@./scripts/run.sh $(BUILD)

asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS=-DMC_ASAN=ON

tsan:
	$(MAKE) test BUILD=build-tsan CMAKE_FLAGS=-DMC_TSAN=ON

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cpp')

clean:
	rm -rf $(BUILD) build-asan build-tsan
