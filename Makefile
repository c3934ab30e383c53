# Convenience targets; the README's two commands (scripts/run-appliance, scripts/run-tests) are the
# supported entry points and need nothing but bash on a Debian machine.
.PHONY: check test snapshots bench fuzz
check:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
test:
	scripts/run-tests
snapshots:
	.venv/bin/pytest tests/tui --snapshot-update
bench:
	.venv/bin/python bench/envelope.py && .venv/bin/python bench/rpc.py && .venv/bin/python bench/store.py && .venv/bin/python bench/card.py
fuzz:
	.venv/bin/python bench/fuzz_envelope.py --inputs 1000000 && .venv/bin/python bench/fuzz_card.py --inputs 1000000
