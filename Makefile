.PHONY: setup demo test build bench
setup:
	./scripts/setup.sh
build:
	npm run --silent build
demo: setup
	./scripts/demo.sh
test: setup
	node --test --test-concurrency=1 --test-timeout=600000 dist/test/
bench: setup
	node dist/bench/ca-sign.js
	node dist/bench/controlplane-push.js
