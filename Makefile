# The two commands of the README. Both build with the same profile into one
# target directory outside the clone, so a machine builds the stack once.
CARGO_TARGET_DIR ?= $(HOME)/.cache/mezzanine/target
export CARGO_TARGET_DIR

.PHONY: run test deps lint demo-plant

## Run the app on its embedded demo plant.
run: deps
	cargo run --bin mezzanine

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
