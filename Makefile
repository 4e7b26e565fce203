# The two commands of the README. Both build with the same profile into one
# target directory outside the clone, so a machine builds the stack once.
CARGO_TARGET_DIR ?= $(HOME)/.cache/mezzanine/target
export CARGO_TARGET_DIR

ARGS ?=

.PHONY: run test deps lint demo-plant bench fuzz

## Run the app on its embedded demo plant (ARGS="..." passes arguments).
run: deps
	cargo run --bin mezzanine -- $(ARGS)

## Run every test (unit, integration, CLI, screenshot under Xvfb).
test: deps
	cargo test

deps:
	@./tools/install-deps.sh

lint: deps
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

## Regenerate scenes/demo-plant.{glb,toml} from src/demo/plant.rs.
demo-plant: deps
	cargo run --bin mezzanine -- generate-demo-plant --out scenes

## Benchmarks: the ingest table and the criterion decoders (dev profile: no second build).
bench: deps
	cargo run --bin mezzanine -- bench ingest
	cargo bench --profile dev --bench decode

## Coverage-guided fuzzing of the parsers (TARGETS="...", FUZZ_SECONDS=900 each).
fuzz: deps
	./tools/fuzz.sh
