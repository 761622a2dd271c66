package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs `ferry demo` as a new user does and checks what it shows:
// every step, no duplicates, the refused concurrent write, the origin
// link, the delete, and the store it leaves for the inspection commands.
// A second run replaces the demo's own store; a store the demo did not
// create is refused.
func TestDemo(t *testing.T) {
	data := filepath.Join(t.TempDir(), "demo-data")
	code, out, errOut := runCLI(t, "demo", "--data", data)
	if code != exitOK {
		t.Fatalf("demo: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"[1/7] Initial sync",
		"merged  5 live organisations",
		"now     CRM 5 companies, ERP 5 customers, each organisation once in each",
		`is "Fjordkraft Energi"`,
		"ERP  1 refused to overwrite (changed in the system after it was collected)",
		`now     ERP keeps "Nordlys Marine AS"`,
		`now     CRM "Nordlys Marine AS", ERP "Nordlys Marine AS"`,
		"collected with $origin ~:erp-customer-collect:5006: linked, not inserted back into the ERP",
		"ERP  1 deleted",
		"crmlive-contact-collect holds 1 contact (the new one); crm-contact-collect (--history all, the default) 7",
		"[7/7] Done in",
		"nothing was duplicated",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The store and files stay for the next commands.
	if code, out, _ := runCLI(t, "--data", data, "dataset", "show", "global-organisation", "--json"); code != exitOK || !strings.Contains(out, `"$merged"`) {
		t.Errorf("dataset show global-organisation: exit %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, "--data", data, "pipe", "log", "erp-customer-share"); code != exitOK || !strings.Contains(out, "deleted 1") {
		t.Errorf("pipe log erp-customer-share: exit %d\n%s", code, out)
	}
	for _, f := range []string{"config/global.json", "connectors/crm/manifest.json", "connectors/erp/templates/customer.json"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("demo file %s: %v", f, err)
		}
	}
	if code, _, errOut := runCLI(t, "demo", "--data", data); code != exitOK {
		t.Errorf("second demo run: exit %d\n%s", code, errOut)
	}
	// A store the demo did not create is never touched.
	other := filepath.Join(t.TempDir(), "mine")
	if code, _, errOut := runCLI(t, "run", "../../examples/demo/config", "--env", "../../examples/demo/env/day1.json", "--data", other); code != exitOK {
		t.Fatalf("run: %s", errOut)
	}
	if code, _, errOut := runCLI(t, "demo", "--data", other); code != exitUsage || !strings.Contains(errOut, "holds a store the demo did not create") {
		t.Errorf("demo over a foreign store: exit %d %s", code, errOut)
	}
}
