package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// cmdFakeAPI serves pipes/rest/fakeapi until ctx ends (SIGINT/SIGTERM in
// the binary). It prints the base URL, the collections and the credentials
// the chosen auth mode accepts, so a system:rest can be pointed at it.
func (c *cli) cmdFakeAPI(ctx context.Context, args []string) int {
	f := c.newFlags("fake-api")
	addr := f.fs.String("addr", "127.0.0.1:8089", "listen address (port 0 picks a free port)")
	seed := f.fs.String("seed", "customers=1000,products=100,invoices=500", "collections to generate: name=count,...")
	auth := f.fs.String("auth", "none", "authentication on /api: none, bearer (tokens from /oauth/token), basic, apikey")
	paging := f.fs.String("paging", "page", "default paging style of next links: page, offset or cursor")
	limit := f.fs.Int("page-size", 100, "page size when a request sets no limit")
	alwaysNext := f.fs.Bool("always-next", false, "give a next link after the last page too (empty-result idiom)")
	seedValue := f.fs.Uint64("seed-value", 1, "seed of the generated data")
	if _, err := f.parse(args); err != nil {
		return exitUsage
	}
	counts, err := parseSeed(*seed)
	if err != nil {
		c.errorf("fake-api: --seed: %v", err)
		return exitUsage
	}
	opts := fakeapi.Options{Seed: counts, SeedValue: *seedValue, DefaultLimit: *limit, AlwaysNext: *alwaysNext,
		Paging: fakeapi.Paging(*paging), Username: "ferry", Password: "ferry-password", APIKey: "ferry-api-key"}
	switch *paging {
	case "page", "offset", "cursor":
	default:
		c.errorf("fake-api: --paging %q: want page, offset or cursor", *paging)
		return exitUsage
	}
	switch *auth {
	case "none", "":
	case "bearer":
		opts.Auth = fakeapi.AuthBearer
	case "basic":
		opts.Auth = fakeapi.AuthBasic
	case "apikey":
		opts.Auth = fakeapi.AuthAPIKey
	default:
		c.errorf("fake-api: --auth %q: want none, bearer, basic or apikey", *auth)
		return exitUsage
	}
	opts.Logger = c.logger()
	api := fakeapi.New(opts)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		c.errorf("fake-api: %v", err)
		return exitFailed
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(c.stdout, "fake api listening on %s (collections: %s)\n", base, strings.Join(api.Collections(), ", "))
	switch opts.Auth {
	case fakeapi.AuthBearer:
		fmt.Fprintf(c.stdout, "oauth2 token_url %s/oauth/token client_id ferry-client client_secret ferry-secret\n", base)
	case fakeapi.AuthBasic:
		fmt.Fprintln(c.stdout, "basic auth username ferry password ferry-password")
	case fakeapi.AuthAPIKey:
		fmt.Fprintln(c.stdout, "header X-API-Key: ferry-api-key")
	}
	fmt.Fprintln(c.stdout, "press Ctrl-C to stop")
	if err := api.Serve(ctx, ln); err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	return exitOK
}

// parseSeed parses "customers=1000,products=50".
func parseSeed(s string) (map[string]int, error) {
	out := map[string]int{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, count, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if !ok || strings.TrimSpace(name) == "" || err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not name=count", part)
		}
		out[strings.TrimSpace(name)] = n
	}
	return out, nil
}
