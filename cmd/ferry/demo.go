package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/examples"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// demoMarker is the key-value entry that marks a store as the demo's, so
// that `ferry demo` never replaces a store it did not create.
const demoMarker = "ferry-demo"

func (c *cli) demoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "demo",
		GroupID: groupPipelines,
		Short:   "Run the two-way sync demo: a CRM and an ERP kept in sync (no outside service needed)",
		Long: `Demo starts two fake systems on 127.0.0.1 — a CRM with companies and contacts
and an ERP with customers, each with its own ids, field names and paging —
connects a connector for each (examples/connectors, written in Ferry's
template dialect), merges companies and customers by organisation number into
one global dataset, and shows step by step, with counts: the initial sync
(matched and merged, nothing duplicated), an edit in the CRM reaching the ERP,
a concurrent edit in the ERP that optimistic locking refuses to overwrite
(and that wins on the next round), a record created in the ERP inserted into
the CRM with $origin established, a delete, and a second instance of the CRM
connector, connected with --history since-connected, that collects only what
changes after it was connected.

It writes the connectors and the config (examples/two-way) next to the store
in --data and leaves everything there for 'ferry dataset show', 'ferry pipe
log' and the other inspection commands. A store in --data that the demo did
not create is never touched.`,
		Example: `  ferry demo
  ferry demo --data /tmp/ferry-demo && ferry --data /tmp/ferry-demo datasets`,
		Args: usageArgs(0, 0, "takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.demo(cmd.Context())
		},
	}
	return cmd
}

// demoSystem is one fake system of the demo.
type demoSystem struct {
	name string
	api  *fakeapi.API
	srv  *http.Server
	url  string
	key  string
}

func startDemoSystem(name string, opts fakeapi.Options) (*demoSystem, error) {
	key := "demo-" + name + "-key"
	opts.Auth, opts.APIKey, opts.LogLimit = fakeapi.AuthAPIKey, key, -1
	s := &demoSystem{name: name, api: fakeapi.New(opts), key: key}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.srv = &http.Server{Handler: s.api.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	s.url = "http://" + ln.Addr().String() + "/api"
	return s, nil
}

func (s *demoSystem) put(collection string, recs ...map[string]any) error {
	for _, r := range recs {
		if _, err := s.api.Put(collection, r); err != nil {
			return err
		}
	}
	return nil
}

// demoRun is the state of one demo: the systems, the store and the output.
type demoRun struct {
	c        *cli
	ctx      context.Context
	dir      string
	crm, erp *demoSystem
	eng      *engine.Engine
	close    func()
	out      io.Writer
	step     int
}

const demoSteps = 7

func (c *cli) demo(ctx context.Context) error {
	start := time.Now()
	dir, err := filepath.Abs(c.g.data)
	if err != nil {
		return usagef("demo: %v", err)
	}
	if c.storeExists() {
		s, err := c.openStore(true, false)
		if err != nil {
			return err
		}
		_, mine, err := s.GetKV(ctx, demoMarker, "created")
		s.Close()
		if err != nil {
			return failf("demo: %v", err)
		}
		if !mine {
			return usagef("demo: %s holds a store the demo did not create; pass --data with another directory", c.g.data)
		}
	}
	// A fresh start: the demo's own files and store only.
	for _, sub := range []string{"connectors", "config"} {
		os.RemoveAll(filepath.Join(dir, sub))
	}
	os.Remove(filepath.Join(dir, "ferry.db"))
	os.Remove(filepath.Join(dir, "secrets.key"))
	if err := writeDemoFiles(dir); err != nil {
		return failf("demo: %v", err)
	}
	d := &demoRun{c: c, ctx: ctx, dir: dir, out: c.stdout}
	if d.crm, err = startDemoSystem("crm", fakeapi.Options{Paging: fakeapi.PagingPage}); err != nil {
		return failf("demo: %v", err)
	}
	defer d.crm.srv.Close()
	if d.erp, err = startDemoSystem("erp", fakeapi.Options{Paging: fakeapi.PagingOffset}); err != nil {
		return failf("demo: %v", err)
	}
	defer d.erp.srv.Close()
	if err := d.seed(); err != nil {
		return failf("demo: %v", err)
	}
	if err := d.connect(); err != nil {
		return err
	}
	defer func() {
		if d.close != nil {
			d.close()
		}
	}()
	fmt.Fprintf(d.out, "Ferry two-way sync demo: a CRM and an ERP kept in sync\n\n")
	fmt.Fprintf(d.out, "  CRM  %s  4 companies, 6 contacts  (ids 101..; name, orgNumber, city; page paging)\n", d.crm.url)
	fmt.Fprintf(d.out, "  ERP  %s  3 customers             (ids 5001..; customerName, orgNo, town; $skip/$top paging, OData envelope)\n", d.erp.url)
	fmt.Fprintf(d.out, "  data %s  (connectors/, config/, ferry.db)\n", dir)
	for _, step := range []func() error{d.initial, d.crmEdit, d.concurrentEdit, d.erpInsert, d.crmDelete, d.history} {
		if err := step(); err != nil {
			return failf("demo step %d: %v", d.step, err)
		}
	}
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] Done in %.1f s. Both systems hold the same %d organisations; nothing was duplicated.\n", d.step, demoSteps, time.Since(start).Seconds(), len(d.crm.api.Records("companies")))
	fmt.Fprintf(d.out, `
Look around (the fake systems are gone; the store stays):
  ferry --data %[1]s datasets
  ferry --data %[1]s dataset show global-organisation
  ferry --data %[1]s dataset show erp-customer-share --id crm-company-collect:101
  ferry --data %[1]s pipe log erp-customer-share
  ferry --data %[1]s pipes %[2]s
The connectors are in %[3]s, the config in %[2]s; docs/write-back.md explains the protocol.
`, c.g.data, filepath.Join(c.g.data, "config"), filepath.Join(c.g.data, "connectors"))
	return nil
}

// writeDemoFiles copies the embedded connectors and config into dir.
func writeDemoFiles(dir string) error {
	return fs.WalkDir(examples.FS, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if rel, ok := strings.CutPrefix(p, "two-way/"); ok {
			target = filepath.Join(dir, filepath.FromSlash(rel))
		}
		b, err := examples.FS.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func num(n int) json.Number { return json.Number(fmt.Sprint(n)) }

// seed fills the systems: two organisations in both (matched by
// organisation number), two only in the CRM, one only in the ERP.
func (d *demoRun) seed() error {
	company := func(id int, name, org, city string) map[string]any {
		return map[string]any{"id": num(id), "name": name, "orgNumber": org, "city": city}
	}
	customer := func(id int, name, org, town string) map[string]any {
		return map[string]any{"id": num(id), "customerName": name, "orgNo": org, "town": town}
	}
	if err := d.crm.put("companies",
		company(101, "Fjordkraft", "911111111", "Bergen"),
		company(102, "Nordlys", "922222222", "Tromsø"),
		company(103, "Bølge", "933333333", "Stavanger"),
		company(104, "Tindan", "944444444", "Ålesund")); err != nil {
		return err
	}
	contact := func(id, company int, first, last string) map[string]any {
		// Contacts from before the demo (for the historical-data step).
		return map[string]any{"id": num(id), "companyId": num(company), "firstName": first, "lastName": last,
			"email": strings.ToLower(first+"."+last) + "@example.no", "lastChanged": fmt.Sprintf("2025-06-%02dT10:00:00.000Z", id)}
	}
	if err := d.crm.put("contacts", contact(1, 101, "Kari", "Nordmann"), contact(2, 101, "Ola", "Hansen"), contact(3, 102, "Ingrid", "Berg"),
		contact(4, 103, "Per", "Lie"), contact(5, 104, "Siri", "Dahl"), contact(6, 104, "Jonas", "Moe")); err != nil {
		return err
	}
	return d.erp.put("customers",
		customer(5001, "Nordlys AS", "922222222", "Tromsø"),
		customer(5002, "Bølge Shipping", "933333333", "Stavanger"),
		customer(5003, "Havbris", "955555555", "Bodø"))
}

// connect records the connector instances (companies and customers both
// ways, contacts pulled) and compiles the config with them.
func (d *demoRun) connect() error {
	for _, s := range []*demoSystem{d.crm, d.erp} {
		dt := map[string]string{"crm": "company", "erp": "customer"}[s.name]
		if err := d.connectInstance(s, s.name, "", map[string]string{dt: "both"}, ""); err != nil {
			return err
		}
	}
	return d.open()
}

// connectInstance records an instance of a demo system's connector, as
// `ferry connect` does, quietly.
func (d *demoRun) connectInstance(s *demoSystem, id, datatypes string, directions map[string]string, history string) error {
	c := d.c
	saved := c.stdout
	c.stdout = io.Discard
	defer func() { c.stdout = saved }()
	params := &kvFlag{name: "--param", m: map[string]string{"base_url": s.url}}
	secret := &kvFlag{name: "--secret", m: map[string]string{"api_key": s.key}}
	dirs := &kvFlag{name: "--direction", m: directions}
	return c.connectHistory(d.ctx, filepath.Join(d.dir, "connectors", s.name), "", id, datatypes, "", params, secret, dirs, history)
}

// open marks the store as the demo's and compiles the config with the
// connected instances.
func (d *demoRun) open() error {
	c := d.c
	store, err := c.openStore(false, false)
	if err != nil {
		return err
	}
	if err := store.PutKV(d.ctx, demoMarker, "created", []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		store.Close()
		return failf("demo: %v", err)
	}
	store.Close()
	plan, _, err := c.loadPlan(d.ctx, "", []string{filepath.Join(d.dir, "config")}, true)
	if err != nil {
		return err
	}
	if store, err = c.openStore(false, false); err != nil {
		return err
	}
	d.eng = engine.New(store, plan, c.logger())
	d.close = func() { store.Close() }
	return nil
}

// heading starts a step.
func (d *demoRun) heading(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] %s\n", d.step, demoSteps, fmt.Sprintf(format, args...))
	if d.c.stderrTTY {
		fmt.Fprintf(d.c.stderr, "\r\x1b[Kdemo: step %d/%d...", d.step, demoSteps)
		defer fmt.Fprint(d.c.stderr, "\r\x1b[K")
	}
}

// sync runs the named pipes (all when none) until nothing changes and
// returns the share counts per share pipe.
func (d *demoRun) sync(pipes ...string) (map[string]engine.ShareCounts, error) {
	recs, err := d.eng.RunUntilStable(d.ctx, pipes, engine.RunOptions{}, 10)
	if err != nil {
		return nil, err
	}
	out := map[string]engine.ShareCounts{}
	for _, r := range recs {
		if p := d.eng.Plan.Pipe(r.Pipe); p != nil && p.Sharer != nil {
			sc := out[r.Pipe]
			sc.Add(r.Share)
			out[r.Pipe] = sc
		}
	}
	return out, nil
}

// rounds syncs everything until a round sends nothing, and returns the
// summed counts.
func (d *demoRun) rounds() (map[string]engine.ShareCounts, error) {
	total := map[string]engine.ShareCounts{}
	for round := 0; round < 5; round++ {
		got, err := d.sync()
		if err != nil {
			return nil, err
		}
		wrote := false
		for p, sc := range got {
			t := total[p]
			t.Add(sc)
			total[p] = t
			wrote = wrote || sc.Inserted+sc.Updated+sc.Deleted > 0
		}
		if !wrote {
			return total, nil
		}
	}
	return total, nil
}

func (d *demoRun) report(counts map[string]engine.ShareCounts) {
	for _, p := range []string{"crm-company-share", "erp-customer-share"} {
		sc := counts[p]
		sys := strings.ToUpper(strings.SplitN(p, "-", 2)[0])
		fmt.Fprintf(d.out, "    %-4s %s\n", sys, orNothing(writesText(sc)))
	}
}

func writesText(sc engine.ShareCounts) string {
	var parts []string
	for _, x := range []struct {
		n    int64
		what string
	}{{sc.Inserted, "inserted"}, {sc.Updated, "updated"}, {sc.Deleted, "deleted"}, {sc.SkippedModified, "refused to overwrite (changed in the system after it was collected)"}} {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	return strings.Join(parts, ", ")
}

// name returns a system's record's name field by id.
func (d *demoRun) crmName(id int) string {
	r, _ := d.crm.api.Get("companies", int64(id))
	return fmt.Sprint(r["name"])
}

func (d *demoRun) erpByOrg(org string) map[string]any {
	for _, r := range d.erp.api.Records("customers") {
		if r["orgNo"] == org {
			return r
		}
	}
	return nil
}

func (d *demoRun) crmByOrg(org string) map[string]any {
	for _, r := range d.crm.api.Records("companies") {
		if r["orgNumber"] == org {
			return r
		}
	}
	return nil
}

// checkNoDuplicates verifies that each system holds each organisation
// number once.
func (d *demoRun) checkNoDuplicates() error {
	for _, x := range []struct {
		sys       *demoSystem
		coll, key string
	}{{d.crm, "companies", "orgNumber"}, {d.erp, "customers", "orgNo"}} {
		seen := map[string]int{}
		for _, r := range x.sys.api.Records(x.coll) {
			seen[fmt.Sprint(r[x.key])]++
		}
		for org, n := range seen {
			if n > 1 {
				return fmt.Errorf("%s holds organisation %s %d times", strings.ToUpper(x.sys.name), org, n)
			}
		}
	}
	return nil
}

func (d *demoRun) initial() error {
	d.heading("Initial sync: collect both systems, match and merge by organisation number, write back")
	counts, err := d.rounds()
	if err != nil {
		return err
	}
	info, _, err := d.eng.Store.Dataset(d.ctx, "global-organisation")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    merged  %d live organisations from 4 CRM companies and 3 ERP customers (2 matched in both;\n"+
		"            a matched organisation takes the values of the system that changed it last)\n", info.Entities-info.Deleted)
	d.report(counts)
	if err := d.checkNoDuplicates(); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    now     CRM %d companies, ERP %d customers, each organisation once in each\n",
		len(d.crm.api.Records("companies")), len(d.erp.api.Records("customers")))
	return nil
}

func (d *demoRun) crmEdit() error {
	d.heading("An edit in the CRM reaches the ERP")
	if _, err := d.crm.api.Patch("companies", 101, map[string]any{"name": "Fjordkraft Energi"}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    CRM     company 101 renamed to %q\n", d.crmName(101))
	counts, err := d.rounds()
	if err != nil {
		return err
	}
	d.report(counts)
	e := d.erpByOrg("911111111")
	fmt.Fprintf(d.out, "    now     ERP customer %v is %q\n", e["id"], e["customerName"])
	return nil
}

func (d *demoRun) concurrentEdit() error {
	d.heading("Concurrent edits: optimistic locking never overwrites a newer change")
	if _, err := d.crm.api.Patch("companies", 102, map[string]any{"name": "Nordlys Marine"}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    CRM     company 102 renamed to \"Nordlys Marine\"; the sync collects it and plans the ERP update...\n")
	var upstream []string
	for _, p := range d.eng.Plan.Pipes {
		if p.Sharer == nil {
			upstream = append(upstream, p.ID)
		}
	}
	sort.Strings(upstream)
	if _, err := d.sync(upstream...); err != nil {
		return err
	}
	if _, err := d.erp.api.Patch("customers", 5001, map[string]any{"customerName": "Nordlys Marine AS"}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    ERP     ...while a user renames customer 5001 to \"Nordlys Marine AS\"\n")
	counts, err := d.sync("crm-company-share", "erp-customer-share")
	if err != nil {
		return err
	}
	d.report(counts)
	fmt.Fprintf(d.out, "    now     ERP keeps %q (the write was based on a version the ERP no longer has)\n", d.erpByOrg("922222222")["customerName"])
	counts, err = d.rounds()
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    next round: the ERP's newer edit is collected and wins\n")
	d.report(counts)
	fmt.Fprintf(d.out, "    now     CRM %q, ERP %q\n", d.crmName(102), d.erpByOrg("922222222")["customerName"])
	return nil
}

func (d *demoRun) erpInsert() error {
	d.heading("A customer created in the ERP is inserted into the CRM, with $origin established")
	rec, err := d.erp.api.Put("customers", map[string]any{"customerName": "Skjærgård", "orgNo": "966666666", "town": "Kristiansand"})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    ERP     new customer %v %q\n", rec["id"], rec["customerName"])
	counts, err := d.rounds()
	if err != nil {
		return err
	}
	d.report(counts)
	c := d.crmByOrg("966666666")
	if c == nil {
		return fmt.Errorf("the new ERP customer did not reach the CRM")
	}
	coll, ok, err := d.eng.Store.Get(d.ctx, "crm-company-collect", fmt.Sprint(c["id"]))
	if err != nil || !ok {
		return fmt.Errorf("CRM company %v not collected: %v", c["id"], err)
	}
	e, _ := coll.Entity()
	fmt.Fprintf(d.out, "    now     CRM company %v %q, collected with $origin %v: linked, not inserted back into the ERP\n", c["id"], c["name"], e["$origin"])
	return d.checkNoDuplicates()
}

func (d *demoRun) crmDelete() error {
	d.heading("A delete: a company deleted in the CRM is deleted in the ERP")
	e := d.erpByOrg("944444444")
	d.crm.api.Delete("companies", 104)
	fmt.Fprintf(d.out, "    CRM     company 104 \"Tindan\" deleted (the ERP's customer %v was created from it)\n", e["id"])
	counts, err := d.rounds()
	if err != nil {
		return err
	}
	d.report(counts)
	if d.erpByOrg("944444444") != nil {
		return fmt.Errorf("the ERP customer of the deleted company is still there")
	}
	fmt.Fprintf(d.out, "    now     ERP customer %v is gone too; CRM %d companies, ERP %d customers\n", e["id"],
		len(d.crm.api.Records("companies")), len(d.erp.api.Records("customers")))
	return nil
}

// history connects a second instance of the CRM connector that takes no
// historical data: its first collect starts at the connection time.
func (d *demoRun) history() error {
	d.heading("Historical data: a new instance collects only what changes after it is connected")
	d.close()
	d.close = nil
	if err := d.connectInstance(d.crm, "crmlive", "contact", nil, "since-connected"); err != nil {
		return err
	}
	if err := d.open(); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    connect ferry connect connectors/crm --system crmlive --datatypes contact --history since-connected\n")
	// A contact changed after the connection (lastChanged is now).
	time.Sleep(1100 * time.Millisecond) // connected_ts has whole seconds
	if _, err := d.crm.api.Put("contacts", map[string]any{"id": num(7), "companyId": num(102), "firstName": "Nora", "lastName": "Aas", "email": "nora.aas@example.no"}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    CRM     a new contact, Nora Aas, is added\n")
	if _, err := d.sync("crm-contact-collect", "crmlive-contact-collect"); err != nil {
		return err
	}
	count := func(ds string) uint64 {
		info, _, _ := d.eng.Store.Dataset(d.ctx, ds)
		return info.Entities - info.Deleted
	}
	fmt.Fprintf(d.out, "    now     crmlive-contact-collect holds %d contact (the new one); crm-contact-collect (--history all, the default) %d\n",
		count("crmlive-contact-collect"), count("crm-contact-collect"))
	return nil
}
