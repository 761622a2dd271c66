package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// fakeAPICmd serves pipes/rest/fakeapi until ctx ends (SIGINT/SIGTERM in
// the binary). It prints the base URL, the collections and the credentials
// the chosen auth mode accepts, so a system:rest can be pointed at it.
func (c *cli) fakeAPICmd() *cobra.Command {
	var (
		addr, seed, auth, paging string
		limit                    int
		alwaysNext               bool
		seedValue                uint64
	)
	cmd := &cobra.Command{
		Use:     "fake-api",
		GroupID: groupTools,
		Short:   "Serve a fake REST API for demos and tests",
		Long: `Fake-api serves generated collections over HTTP (paging, since, an OAuth2 token
endpoint, fault injection; pipes/rest/fakeapi) until Ctrl-C, and prints the
base URL and the credentials the chosen --auth accepts (with --json: one JSON
object on the first line).`,
		Example: `  ferry fake-api --addr 127.0.0.1:8089 --seed Customer=45,Product=30 --auth bearer
  ferry fake-api --addr 127.0.0.1:0 --paging cursor --page-size 50 --json`,
		Args: usageArgs(0, 0, "takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			counts, err := parseSeed(seed)
			if err != nil {
				return usagef("fake-api: --seed: %v", err)
			}
			opts := fakeapi.Options{Seed: counts, SeedValue: seedValue, DefaultLimit: limit, AlwaysNext: alwaysNext,
				Paging: fakeapi.Paging(paging), Username: "ferry", Password: "ferry-password", APIKey: "ferry-api-key"}
			switch paging {
			case "page", "offset", "cursor":
			default:
				return usagef("fake-api: --paging %q: want page, offset or cursor", paging)
			}
			switch auth {
			case "none", "":
			case "bearer":
				opts.Auth = fakeapi.AuthBearer
			case "basic":
				opts.Auth = fakeapi.AuthBasic
			case "apikey":
				opts.Auth = fakeapi.AuthAPIKey
			default:
				return usagef("fake-api: --auth %q: want none, bearer, basic or apikey", auth)
			}
			opts.Logger = c.logger()
			api := fakeapi.New(opts)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return failf("fake-api: %v", err)
			}
			base := "http://" + ln.Addr().String()
			info := map[string]any{"url": base, "collections": api.Collections(), "auth": auth}
			var creds string
			switch opts.Auth {
			case fakeapi.AuthBearer:
				creds = fmt.Sprintf("oauth2 token_url %s/oauth/token client_id ferry-client client_secret ferry-secret", base)
				info["token_url"], info["client_id"], info["client_secret"] = base+"/oauth/token", "ferry-client", "ferry-secret"
			case fakeapi.AuthBasic:
				creds = "basic auth username ferry password ferry-password"
				info["username"], info["password"] = "ferry", "ferry-password"
			case fakeapi.AuthAPIKey:
				creds = "header X-API-Key: ferry-api-key"
				info["header"] = "X-API-Key: ferry-api-key"
			}
			if c.g.json {
				enc := json.NewEncoder(c.stdout)
				enc.Encode(info)
			} else {
				fmt.Fprintf(c.stdout, "fake api listening on %s (collections: %s)\n", base, strings.Join(api.Collections(), ", "))
				if creds != "" {
					fmt.Fprintln(c.stdout, creds)
				}
				fmt.Fprintln(c.stdout, "press Ctrl-C to stop")
			}
			if err := api.Serve(cmd.Context(), ln); err != nil {
				return failf("%v", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8089", "listen address (port 0 picks a free port)")
	f.StringVar(&seed, "seed", "customers=1000,products=100,invoices=500", "collections to generate: name=count,...")
	f.StringVar(&auth, "auth", "none", "authentication on /api: none, bearer (tokens from /oauth/token), basic, apikey")
	f.StringVar(&paging, "paging", "page", "default paging style of next links: page, offset or cursor")
	f.IntVar(&limit, "page-size", 100, "page size when a request sets no limit")
	f.BoolVar(&alwaysNext, "always-next", false, "give a next link after the last page too (empty-result idiom)")
	f.Uint64Var(&seedValue, "seed-value", 1, "seed of the generated data")
	cmd.RegisterFlagCompletionFunc("auth", cobra.FixedCompletions([]string{"none", "bearer", "basic", "apikey"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("paging", cobra.FixedCompletions([]string{"page", "offset", "cursor"}, cobra.ShellCompDirectiveNoFileComp))
	return jsonOK(cmd)
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
