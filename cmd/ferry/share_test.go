package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// shareCLIConfig is a CRM on fakeapi with collect, a desired state
// (embedded, as an upstream mapping would write it) and a share pipe.
func shareCLIConfig(base string, desired []map[string]any, pump string) string {
	d, _ := json.Marshal(desired)
	return fmt.Sprintf(`[
 {"_id": "crm", "type": "system:rest", "url_pattern": "%s/api/%%s",
  "operations": {
   "list": {"url": "customers", "payload_property": "data"},
   "lookup": {"url": "customers/{{ entity.id }}"},
   "insert": {"method": "POST", "url": "customers"},
   "update": {"method": "PUT", "url": "customers/{{ entity.id }}"},
   "delete": {"method": "DELETE", "url": "customers/{{ entity.id }}"}}},
 {"_id": "crm-customer-collect", "type": "pipe",
  "source": {"type": "rest", "system": "crm", "operation": "list", "id_expression": "{{ id }}"},
  "transform": {"type": "template", "template": "transform-collect-rest", "properties": {"primary_key": "id", "share_dataset": "crm-customer-share"}}},
 {"_id": "crm-customer-transform", "type": "pipe", "source": {"type": "embedded", "entities": %s}},
 {"_id": "crm-customer-share", "type": "pipe", "batch_size": 1, "pump": %s,
  "source": {"type": "dataset", "dataset": "crm-customer-transform"},
  "transform": {"type": "template", "template": "transform-share-rest",
   "properties": {"rest_system": "crm", "primary_key": "id", "share_dataset": "crm-customer-share"}},
  "sink": {"deletion_tracking": false, "set_initial_offset": "onload"}}
]`, base, d, pump)
}

// TestShareCommands runs write-back as a user does: ferry run, ferry
// share plan (lookups only), ferry pipe log with the share counts,
// failures that end in the dead-letter dataset, ferry retry, and a
// delete circuit breaker passed with --accept-deletes.
func TestShareCommands(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{})
	for i := 1; i <= 3; i++ {
		if _, err := api.Put("customers", map[string]any{"id": json.Number(fmt.Sprint(i)), "name": fmt.Sprintf("C%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "crm.json")
	write := func(desired []map[string]any, pump string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(shareCLIConfig(srv.URL, desired, pump)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ferry := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, append(args, "--data", data)...)
		if code != want {
			t.Fatalf("ferry %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
	desired := func(rename string) []map[string]any {
		var out []map[string]any
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("C%d", i)
			e := map[string]any{"_id": fmt.Sprint(i), "id": i, "name": name, "$based_on": map[string]any{"id": i, "name": name}}
			if fmt.Sprint(i) == rename {
				e["name"] = name + " renamed"
			}
			out = append(out, e)
		}
		return append(out, map[string]any{"_id": "erp:9", "$ids": []any{"~:erp:9"}, "$origin": "~:erp:9", "name": "From the ERP"})
	}
	write(desired("2"), "{}")
	ferry(exitOK, "run", cfg, "crm-customer-collect", "crm-customer-transform")

	// The plan shows every decision and sends only GETs.
	api.ResetStats()
	out := strings.Join(strings.Fields(ferry(exitOK, "share", "plan", cfg, "crm-customer-share")), " ")
	for _, want := range []string{"2 update", "erp:9 insert", "1 discard-entity-not-changed", "crm-customer-share: 4 entities, inserted 1, updated 1, skipped_unchanged 2, requests 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	for _, r := range api.Requests() {
		if r.Method != "GET" {
			t.Errorf("the plan sent %s %s", r.Method, r.Path)
		}
	}
	var plan struct {
		Counts struct{ Inserted, Updated int } `json:"counts"`
	}
	json.Unmarshal([]byte(ferry(exitOK, "share", "plan", cfg, "crm-customer-share", "--json")), &plan)
	if plan.Counts.Inserted != 1 || plan.Counts.Updated != 1 {
		t.Errorf("plan --json counts = %+v", plan.Counts)
	}

	// The run does it; the run log shows the counts.
	out = ferry(exitOK, "run", cfg, "crm-customer-share")
	if !strings.Contains(out, "inserted 1, updated 1, skipped_unchanged 2") {
		t.Errorf("run output:\n%s", out)
	}
	if out := ferry(exitOK, "pipe", "log", "crm-customer-share"); !strings.Contains(out, "inserted 1, updated 1") {
		t.Errorf("pipe log:\n%s", out)
	}
	var runs []struct {
		Share map[string]int `json:"share"`
	}
	json.Unmarshal([]byte(ferry(exitOK, "pipe", "log", "crm-customer-share", "--json", "--limit", "1")), &runs)
	if len(runs) != 1 || runs[0].Share["inserted"] != 1 || runs[0].Share["updated"] != 1 {
		t.Errorf("pipe log --json = %+v", runs)
	}
	if n := len(api.Records("customers")); n != 4 {
		t.Errorf("%d customers after the run", n)
	}

	// Writes fail (503): the entity goes to the retry queue, then, after
	// max_retries_per_entity, to the dead-letter dataset; ferry retry
	// puts it back.
	write(desired("3"), `{"max_retries_per_entity": 0}`)
	api.SetFaults(fakeapi.Faults{Methods: []string{"PUT"}, ErrorEvery: 1})
	out = ferry(exitFailed, "run", cfg, "crm-customer-transform", "crm-customer-share")
	if !strings.Contains(out, "dead_lettered 1") {
		t.Errorf("failing run:\n%s", out)
	}
	if out := ferry(exitOK, "dataset", "show", "system:dead-letter:crm-customer-share", "--json"); !strings.Contains(out, "503") {
		t.Errorf("dead letters:\n%s", out)
	}
	api.SetFaults(fakeapi.Faults{})
	if out := ferry(exitOK, "retry", cfg, "crm-customer-share"); !strings.Contains(out, "crm-customer-share: 1 entity back in the retry queue") {
		t.Errorf("retry: %s", out)
	}
	if out := ferry(exitOK, "run", cfg, "crm-customer-share"); !strings.Contains(out, "updated 1") {
		t.Errorf("run after retry:\n%s", out)
	}
	if r, _ := api.Get("customers", 3); r["name"] != "C3 renamed" {
		t.Errorf("customer 3 = %v", r)
	}
	ferry(exitUsage, "retry", cfg, "crm-customer-collect")
	ferry(exitUsage, "share", "plan", cfg, "crm-customer-nope")

	// A run that would delete more than the breaker allows sends nothing.
	var del []map[string]any
	for _, e := range desired("") {
		if e["_id"] != "erp:9" {
			// The contract's plain delete (no $based_on): sent as it is.
			delete(e, "$based_on")
			e["_deleted"] = true
			del = append(del, e)
		}
	}
	write(del, `{"delete_circuit_breaker_count": 1, "delete_circuit_breaker_factor": 0}`)
	out = ferry(exitFailed, "run", cfg, "crm-customer-transform", "crm-customer-share")
	if !strings.Contains(out, "delete circuit breaker tripped: the run would delete 3 records") {
		t.Errorf("breaker run:\n%s", out)
	}
	if n := len(api.Records("customers")); n != 4 {
		t.Errorf("the tripped run deleted: %d customers left", n)
	}
	ferry(exitOK, "run", cfg, "crm-customer-share", "--accept-deletes")
	if n := len(api.Records("customers")); n != 1 {
		t.Errorf("%d customers after --accept-deletes, want 1", n)
	}
}
