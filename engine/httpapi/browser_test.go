package httpapi_test

import (
	"bytes"
	"context"
	"flag"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/connectors"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/pipes/all"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the browser test's screenshots to docs/img (shown by docs/operations.md)")

// chromium finds a Chromium to drive: $FERRY_CHROMIUM, else chromium,
// chromium-browser or google-chrome on PATH. Without one the test is
// skipped with a message saying how to install it, except on CI, where
// .ci/run installs Debian's chromium and a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FERRY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium on this CI machine: .ci/run should have installed Debian's chromium")
	}
	t.Skip("SKIPPED: no Chromium found for the browser test; install it (Debian: apt-get install chromium) or set FERRY_CHROMIUM")
	return ""
}

// browserConfig: a CRM connector instance's pipes ("crm-*") and an ERP
// pipe; day is 1 or 2 (on day 2 one person is gone and one changed).
func browserConfig(day int) string {
	persons := `{"_id":"p1","name":"Ada Lovelace","email":"ada@example.org","country":"GB"},
	 {"_id":"p2","name":"Alan Turing","email":"alan@example.org","country":"GB"},
	 {"_id":"p3","name":"Grace Hopper","email":"grace@example.org","country":"US"}`
	if day == 2 {
		persons = `{"_id":"p1","name":"Ada Lovelace","email":"ada@example.org","country":"GB"},
	 {"_id":"p3","name":"Grace Hopper","email":"grace.hopper@example.org","country":"US","title":"Rear Admiral"},
	 {"_id":"p4","name":"Edsger Dijkstra","email":"edsger@example.org","country":"NL"}`
	}
	return `[
 {"_id":"crm-person-collect","type":"pipe","source":{"type":"embedded","entities":[` + persons + `]}},
 {"_id":"crm-person-golden","type":"pipe","source":{"type":"dataset","dataset":"crm-person-collect"},
  "transform":{"type":"jq","expression":"{_id, _deleted, name, email: (.email | ascii_downcase), country}"}},
 {"_id":"erp-customer-collect","type":"pipe","source":{"type":"embedded","entities":[{"_id":"10001","name":"Ada Lovelace","credit_limit":12345678901234567890.10}]},"pump":{"schedule_interval":300}}
]`
}

// TestBrowserInChromium drives the web browser in a real headless
// Chromium: log in with the token, run and reset a pipe with the page's
// buttons, click through pipe -> dataset -> entity -> history, search by
// _id prefix, and open the datasets and connector pages. It saves a
// screenshot of each page (to docs/img with -update-screenshots).
func TestBrowserInChromium(t *testing.T) {
	exe := chromium(t)
	dir := t.TempDir()
	ctx := context.Background()
	store := enginetest.Store(t, filepath.Join(dir, "data"))
	day1 := engine.New(store, enginetest.Plan(t, all.Registry(), t.TempDir(), browserConfig(1)), nil)
	for _, p := range []string{"crm-person-collect", "crm-person-golden", "erp-customer-collect"} {
		if _, err := day1.Run(ctx, p, engine.RunOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eng := engine.New(store, enginetest.Plan(t, all.Registry(), t.TempDir(), browserConfig(2)), nil)
	if _, err := eng.Run(ctx, "crm-person-golden", engine.RunOptions{}); err != nil { // nothing new yet
		t.Fatal(err)
	}
	if err := connectors.Put(ctx, store, &connectors.Instance{ID: "crm", Connector: "crm", Dir: "/opt/connectors/crm-connector",
		Params: map[string]string{"base_url": "https://crm.example.com/api"}, Datatypes: []string{"person"}, Connected: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(eng, httpapi.Options{Token: testToken, UI: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	base := srv.URL

	shots := t.TempDir()
	if *updateScreenshots {
		shots = filepath.Join("..", "..", "docs", "img")
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 700),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("hide-scrollbars", true))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	defer cancelTimeout()
	// Accept the reset button's confirm().
	dialogs := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, "ui-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		u, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	// The buttons' script reloads the page after a success; the reloaded
	// page's status line is empty.
	reloaded := chromedp.WaitReady(chromedp.Search(`//div[@id="status" and string-length(normalize-space(.))=0]`))

	// Every page asks for a login first; the token logs in.
	do("open a page", chromedp.Navigate(base+"/ui/datasets"), chromedp.WaitVisible(css(`input[name=token]`)))
	if u := location(); !strings.Contains(u, "/login?next=") {
		t.Errorf("not sent to the login page: %s", u)
	}
	do("wrong token", chromedp.SendKeys(css(`input[name=token]`), "not-the-token"),
		chromedp.Submit(css(`input[name=token]`)), chromedp.WaitVisible(css(`p.err`)))
	shot("login")
	do("log in", chromedp.SendKeys(css(`input[name=token]`), testToken),
		chromedp.Submit(css(`input[name=token]`)), chromedp.WaitVisible(css(`table.datasets`)))
	if u := location(); !strings.HasSuffix(u, "/ui/datasets") {
		t.Errorf("login did not return to the page asked for: %s", u)
	}

	// Run a pipe from the overview: day 2's export arrives.
	do("overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(css(`table.pipes`)))
	do("click Run", chromedp.Click(css(`button[data-action=run][data-pipe="crm-person-collect"]`)),
		chromedp.WaitVisible(chromedp.Search(`//div[@id="status"][contains(., "Ran crm-person-collect")]`)))
	if s := text(`#status`); !strings.Contains(s, "written 2, deleted 1") {
		t.Errorf("run status: %q", s)
	}
	runs, _ := store.Runs(ctx, "crm-person-collect", 1)
	if len(runs) != 1 || runs[0].Written != 2 || runs[0].Deleted != 1 {
		t.Fatalf("the page's run did not run the pipe: %+v", runs)
	}
	// The page reloads with the new counts; the golden pipe (no
	// scheduler here) catches up through its own button.
	do("reloaded", reloaded, chromedp.WaitVisible(css(`table.pipes`)))
	do("run golden", chromedp.Click(css(`button[data-action=run][data-pipe="crm-person-golden"]`)),
		chromedp.WaitVisible(chromedp.Search(`//div[@id="status"][contains(., "Ran crm-person-golden")]`)))
	do("reloaded", reloaded, chromedp.WaitVisible(css(`table.pipes`)))
	if s := text(`#pipe-crm-person-golden`); !strings.Contains(s, "incremental") {
		t.Errorf("the overview does not show the golden run: %q", s)
	}
	shot("pipes")

	// Reset from the page (confirm accepted): the offset is cleared.
	do("click Reset", chromedp.Click(css(`button[data-action=reset][data-pipe="erp-customer-collect"]`)),
		chromedp.WaitVisible(chromedp.Search(`//div[@id="status"][contains(., "reset done")]`)))
	if st, _ := store.PipeState(ctx, "erp-customer-collect"); st.Since != "" {
		t.Errorf("reset from the page left offset %q", st.Since)
	}

	// pipe -> dataset -> entity -> history.
	do("open pipe", reloaded, chromedp.Navigate(base+"/"), chromedp.WaitVisible(css(`table.pipes`)),
		chromedp.Click(css(`a[href="/ui/pipes/crm-person-collect"]`)), chromedp.WaitVisible(css(`table.runs`)))
	if s := text(`table.runs`); strings.Count(s, "full") < 2 {
		t.Errorf("run log: %q", s)
	}
	shot("pipe")
	do("open dataset", chromedp.Click(css(`#output-link`)), chromedp.WaitVisible(css(`table.entities`)))
	if s := text(`table.entities`); !strings.Contains(s, "p4") || !strings.Contains(s, "deleted") {
		t.Errorf("entity list: %q", s)
	}
	do("search", chromedp.SendKeys(css(`input[name=prefix]`), "p"), chromedp.Submit(css(`input[name=prefix]`)),
		chromedp.WaitVisible(chromedp.Search(`//a[contains(., "clear")]`)))
	shot("dataset")
	do("open entity", chromedp.Click(css(`a[href="/ui/datasets/crm-person-collect/entity?id=p3"]`)),
		chromedp.WaitVisible(css(`table.diff`)))
	if s := text(`table.diff`); !strings.Contains(s, "/email") || !strings.Contains(s, "grace.hopper@example.org") || !strings.Contains(s, "/title") {
		t.Errorf("history diff: %q", s)
	}
	shot("entity")

	// Datasets and a connector instance's pipes.
	do("datasets", chromedp.Navigate(base+"/ui/datasets"), chromedp.WaitVisible(css(`table.datasets`)))
	if s := text(`table.datasets`); !strings.Contains(s, "crm-person-golden") {
		t.Errorf("datasets: %q", s)
	}
	shot("datasets")
	do("connectors", chromedp.Navigate(base+"/ui/connectors"), chromedp.Click(css(`a[href="/ui/connectors/crm"]`)),
		chromedp.WaitVisible(css(`table.pipes`)))
	if s := text(`table.pipes`); !strings.Contains(s, "crm-person-golden") || strings.Contains(s, "erp-customer-collect") {
		t.Errorf("connector pipes: %q", s)
	}
	shot("connector")
}
