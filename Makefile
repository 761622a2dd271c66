# Ferry developer shortcuts. `make demo` runs the two-way sync demo (a CRM
# and an ERP on 127.0.0.1); `make demo-oneway` runs examples/demo twice (day 1,
# then day 2 with a person removed from the CRM export) and shows the tracked
# deletion; `make test` is the test command CI runs.
DATA ?= ferry-data

.PHONY: demo demo-oneway test bench build clean fuzz install

build:
	go build -o ferry ./cmd/ferry

demo:
	go run ./cmd/ferry demo --data $(DATA)

demo-oneway:
	rm -rf $(DATA)
	go run ./cmd/ferry run examples/demo/config --env examples/demo/env/day1.json --data $(DATA)
	go run ./cmd/ferry run examples/demo/config --env examples/demo/env/day2.json --data $(DATA)
	go run ./cmd/ferry datasets --data $(DATA)
	go run ./cmd/ferry dataset show crm-person-collect --id p2 --history --data $(DATA)

test:
	go test -race ./...

# `make fuzz FUZZTIME=10m` runs every fuzz target for FUZZTIME, one after the
# other (FUZZ=regexp selects "package/FuzzName"; FUZZPARALLEL workers each).
FUZZTIME ?= 1m
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz

install:
	go install ./cmd/ferry

bench:
	go run ./cmd/ferry bench

clean:
	rm -rf $(DATA) ferry
