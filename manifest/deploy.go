package manifest

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Schedules the hosted deployer injects with Options.Deploy.
const (
	DefaultScheduleInterval = 300         // seconds, every input pipe
	SinceScheduleInterval   = 10          // seconds, input pipes with metadata.supports_since: true
	WebhookScheduleInterval = 3600        // seconds, datatypes with webhook: true
	SlowCron                = "0 0 * * *" // sync_frequency "slow": daily at midnight
	WeeklyCron              = "0 0 * * 1" // sync_frequency "weekly": Mondays at midnight
)

// nonInputSources are source types whose pipes are not input pipes: they
// read datasets (and are signalled), or receive pushes (http_endpoint has no
// pump).
var nonInputSources = map[string]bool{
	"dataset": true, "merge_datasets": true, "union_datasets": true, "diff_datasets": true, "http_endpoint": true,
}

// IsInputPipe reports whether a pipe reads from outside Ferry (rest,
// embedded, sql, ...): its source type is not dataset, merge_datasets,
// union_datasets, diff_datasets or http_endpoint. Pipes without a source
// object are not input pipes.
func IsInputPipe(pipe Object) bool {
	if pipe.GetString("type") != "pipe" {
		return false
	}
	src, ok := mustGet(pipe, "source").(Object)
	if !ok {
		return false
	}
	return !nonInputSources[src.GetString("type")]
}

// applyDeploy injects the hosted deployer's configuration:
//
//   - every input pipe (IsInputPipe) without a pump schedule of its own
//     (pump.schedule_interval or pump.cron_expression in the template)
//     gets pump.schedule_interval 300, or 10 when its
//     metadata.supports_since is true;
//   - the datatype-level settings go to the datatype's target pipe:
//     "<system>-<datatype>-all" when the datatype produced it and it is an
//     input pipe, else "<system>-<datatype>-collect" under the same
//     condition, else every input pipe of the datatype (superoffice's
//     "quote-salelist"). On the target, datatypes.*.schedule_interval wins
//     over everything, then webhook: true (3600 s), then sync_frequency
//     slow/weekly (cron "0 0 * * *" / "0 0 * * 1"); these override a
//     template's own pump schedule, and setting one kind of schedule
//     removes the other;
//   - with use_webhook_secret, http_endpoint pipes whose _id ends in
//     "event" get the anonymous write permission (as WriteExpanded).
func (m *Manifest) applyDeploy(comps []Component, system string) {
	for i := range comps {
		c := &comps[i]
		if !IsInputPipe(c.obj) {
			continue
		}
		pump, _ := mustGet(c.obj, "pump").(Object)
		if _, ok := pump.Get("schedule_interval"); ok {
			continue
		}
		if _, ok := pump.Get("cron_expression"); ok {
			continue
		}
		interval := DefaultScheduleInterval
		if meta, ok := mustGet(c.obj, "metadata").(Object); ok && mustGet(meta, "supports_since") == true {
			interval = SinceScheduleInterval
		}
		setPump(&c.obj, "schedule_interval", json.Number(itoa(interval)))
	}
	for _, d := range m.Datatypes {
		var setting string
		var value any
		switch {
		case d.ScheduleInterval != "":
			setting, value = "schedule_interval", d.ScheduleInterval
		case d.Webhook:
			setting, value = "schedule_interval", json.Number(itoa(WebhookScheduleInterval))
		case d.SyncFrequency == "slow":
			setting, value = "cron_expression", SlowCron
		case d.SyncFrequency == "weekly":
			setting, value = "cron_expression", WeeklyCron
		default:
			continue
		}
		for _, i := range targets(comps, system, d.Name) {
			setPump(&comps[i].obj, setting, value)
		}
	}
	if m.UseWebhookSecret {
		for i := range comps {
			addWebhookPermissions(&comps[i].obj)
		}
	}
}

// targets returns the indexes of the pipes that receive a datatype's
// schedule (see applyDeploy).
func targets(comps []Component, system, datatype string) []int {
	for _, suffix := range []string{"-all", "-collect"} {
		id := system + "-" + datatype + suffix
		for i := range comps {
			if comps[i].Datatype == datatype && comps[i].ID == id && IsInputPipe(comps[i].obj) {
				return []int{i}
			}
		}
	}
	var out []int
	for i := range comps {
		if comps[i].Datatype == datatype && IsInputPipe(comps[i].obj) {
			out = append(out, i)
		}
	}
	return out
}

func setPump(pipe *Object, key string, value any) {
	pump, _ := mustGet(*pipe, "pump").(Object)
	pump = append(Object{}, pump...)
	switch key {
	case "schedule_interval":
		pump.Delete("cron_expression")
	case "cron_expression":
		pump.Delete("schedule_interval")
	}
	pump.Set(key, value)
	pipe.Set("pump", pump)
}

// webhookPermissions is what sesam-py's expand_connector sets on webhook
// endpoint pipes when the manifest has use_webhook_secret.
func webhookPermissions() []any {
	return []any{[]any{"allow", []any{"group:Anonymous"}, []any{"write_data"}}}
}

// addWebhookPermissions sets the anonymous write permission on an
// http_endpoint pipe whose _id ends in "event", and reports whether it did.
func addWebhookPermissions(pipe *Object) bool {
	if pipe.GetString("type") != "pipe" || !strings.HasSuffix(pipe.GetString("_id"), "event") {
		return false
	}
	src, ok := mustGet(*pipe, "source").(Object)
	if !ok || src.GetString("type") != "http_endpoint" {
		return false
	}
	pipe.Set("permissions", webhookPermissions())
	return true
}

func itoa(n int) string { return strconv.Itoa(n) }
