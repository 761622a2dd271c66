package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrydata/ferry/engine"
)

// metrics are the API's Prometheus metrics. Run metrics are updated from
// engine run events (engine.RunObserver) and count what this process ran;
// dataset, store and lag metrics are read from the store at each scrape
// (a handful of metadata reads per pipe and dataset, no scans).
type metrics struct {
	eng         *engine.Engine
	runs        *prometheus.CounterVec
	entities    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	running     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	lastRun     *prometheus.GaugeVec
	lastFailed  *prometheus.GaugeVec

	budgetInFlight prometheus.Gauge
	budgetRejected prometheus.Counter

	mu      sync.Mutex
	started map[string]time.Time // pipes running now, since when
}

// Metric names, documented in docs/operations.md.
const (
	metricRuns        = "ferry_pipe_runs_total"
	metricEntities    = "ferry_pipe_entities_total"
	metricDuration    = "ferry_pipe_run_duration_seconds"
	metricRunning     = "ferry_pipe_running"
	metricLastSuccess = "ferry_pipe_last_success_timestamp_seconds"
	metricLastRun     = "ferry_pipe_last_run_timestamp_seconds"
	metricLastFailed  = "ferry_pipe_last_run_failed"
)

func newMetrics(eng *engine.Engine, reg *prometheus.Registry, budget *bodyBudget) (*metrics, error) {
	m := &metrics{
		eng: eng,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRuns,
			Help: "Runs (and webhook receives) of a pipe finished by this process, by result (ok, failed)."}, []string{"pipe", "result"}),
		entities: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricEntities,
			Help: "Entities counted by the pipe's finished runs, by counter of the run record (read, written, unchanged, deleted, ...) and reason (for counters kept per reason, else empty)."},
			[]string{"pipe", "counter", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricDuration,
			Help:    "Duration of a pipe's finished runs.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"pipe"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricRunning,
			Help: "1 while a run of the pipe is under way."}, []string{"pipe"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricLastSuccess,
			Help: "End of the pipe's last successful run (Unix seconds); absent before one."}, []string{"pipe"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricLastRun,
			Help: "End of the pipe's last run (Unix seconds); absent before one."}, []string{"pipe"}),
		lastFailed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricLastFailed,
			Help: "1 when the pipe's last run failed, else 0; absent before a run."}, []string{"pipe"}),
		budgetInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_http_request_body_bytes_in_flight",
			Help: "Bytes of request bodies (webhooks) held by requests under way, bounded by the body budget."}),
		budgetRejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_http_request_body_budget_rejections_total",
			Help: "Requests answered 429 because the shared request body budget was full."}),
		started: map[string]time.Time{},
	}
	budget.onChange = func(n int64) { m.budgetInFlight.Set(float64(n)) }
	for _, c := range []prometheus.Collector{
		m.runs, m.entities, m.duration, m.running, m.lastSuccess, m.lastRun, m.lastFailed,
		m.budgetInFlight, m.budgetRejected,
		&storeCollector{eng: eng},
		collectors.NewGoCollector(),
		// Reading /proc is the dearest part of a scrape (about 0.6 ms);
		// its figures are reused for a second when scrapes come faster.
		&cachedCollector{inner: collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), ttl: time.Second},
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.initPipes()
	return m, nil
}

// initPipes creates every pipe's series at zero (so rate() works from the
// first run) and the last run times from the store.
func (m *metrics) initPipes() {
	var zero engine.RunRecord
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range m.eng.Plan.Pipes {
		m.runs.WithLabelValues(p.ID, "ok")
		m.runs.WithLabelValues(p.ID, "failed")
		zero.Counts(func(name, key string, _ int64) { m.entities.WithLabelValues(p.ID, name, key) })
		m.running.WithLabelValues(p.ID).Set(0)
		st, err := m.eng.Store.PipeState(ctx, p.ID)
		if err != nil || st.LastRun.IsZero() {
			continue
		}
		m.lastRun.WithLabelValues(p.ID).Set(unixSeconds(st.LastRun))
		if st.LastError == "" {
			m.lastFailed.WithLabelValues(p.ID).Set(0)
			m.lastSuccess.WithLabelValues(p.ID).Set(unixSeconds(st.LastRun))
			continue
		}
		m.lastFailed.WithLabelValues(p.ID).Set(1)
		runs, err := m.eng.Store.Runs(ctx, p.ID, 100)
		if err != nil {
			continue
		}
		for _, r := range runs {
			if r.Error == "" {
				m.lastSuccess.WithLabelValues(p.ID).Set(unixSeconds(r.End))
				break
			}
		}
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// RunStarted implements engine.RunObserver.
func (m *metrics) RunStarted(p *engine.Pipe) {
	m.mu.Lock()
	m.started[p.ID] = time.Now()
	m.mu.Unlock()
	m.running.WithLabelValues(p.ID).Set(1)
}

// RunFinished implements engine.RunObserver: the run's counters come from
// engine.RunRecord.Counts, so counters added to the run record are
// exported without changes here.
func (m *metrics) RunFinished(p *engine.Pipe, rec engine.RunRecord) {
	m.mu.Lock()
	delete(m.started, p.ID)
	m.mu.Unlock()
	m.running.WithLabelValues(p.ID).Set(0)
	result := "ok"
	if rec.Error != "" {
		result = "failed"
	}
	m.runs.WithLabelValues(p.ID, result).Inc()
	rec.Counts(func(name, key string, n int64) {
		if n > 0 {
			m.entities.WithLabelValues(p.ID, name, key).Add(float64(n))
		}
	})
	if !rec.Start.IsZero() && !rec.End.IsZero() {
		m.duration.WithLabelValues(p.ID).Observe(rec.End.Sub(rec.Start).Seconds())
	}
	if !rec.End.IsZero() {
		m.lastRun.WithLabelValues(p.ID).Set(unixSeconds(rec.End))
		if result == "ok" {
			m.lastSuccess.WithLabelValues(p.ID).Set(unixSeconds(rec.End))
			m.lastFailed.WithLabelValues(p.ID).Set(0)
		} else {
			m.lastFailed.WithLabelValues(p.ID).Set(1)
		}
	}
}

// runningSince reports whether pipe is running and since when.
func (m *metrics) runningSince(pipe string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.started[pipe]
	return t, ok
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// storeCollector reads dataset, store and lag metrics at scrape time.
type storeCollector struct {
	eng *engine.Engine
}

var (
	descDatasetEntities = prometheus.NewDesc("ferry_dataset_entities",
		"Distinct _ids in the dataset (deleted ones included).", []string{"dataset"}, nil)
	descDatasetDeleted = prometheus.NewDesc("ferry_dataset_deleted_entities",
		"_ids whose latest version is deleted.", []string{"dataset"}, nil)
	descDatasetVersions = prometheus.NewDesc("ferry_dataset_versions",
		"Versions in the dataset's log.", []string{"dataset"}, nil)
	descDatasetUpdated = prometheus.NewDesc("ferry_dataset_last_updated_timestamp_seconds",
		"When the dataset last changed (Unix seconds).", []string{"dataset"}, nil)
	descStoreSize = prometheus.NewDesc("ferry_store_file_size_bytes",
		"Size of the store's data file.", nil, nil)
	descLagVersions = prometheus.NewDesc("ferry_pipe_lag_versions",
		"Versions of a source dataset after the pipe's offset (not yet read).", []string{"pipe", "dataset"}, nil)
	descLagSeconds = prometheus.NewDesc("ferry_pipe_lag_seconds",
		"Age of the oldest version of a source dataset the pipe has not read yet (0 when caught up).", []string{"pipe", "dataset"}, nil)
)

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDatasetEntities, descDatasetDeleted, descDatasetVersions, descDatasetUpdated, descStoreSize, descLagVersions, descLagSeconds} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	infos, err := c.eng.Store.Datasets(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDatasetEntities, err)
		return
	}
	byName := make(map[string]engine.DatasetInfo, len(infos))
	for _, d := range infos {
		byName[d.Name] = d
		ch <- prometheus.MustNewConstMetric(descDatasetEntities, prometheus.GaugeValue, float64(d.Entities), d.Name)
		ch <- prometheus.MustNewConstMetric(descDatasetDeleted, prometheus.GaugeValue, float64(d.Deleted), d.Name)
		ch <- prometheus.MustNewConstMetric(descDatasetVersions, prometheus.GaugeValue, float64(d.Versions), d.Name)
		if !d.Updated.IsZero() {
			ch <- prometheus.MustNewConstMetric(descDatasetUpdated, prometheus.GaugeValue, unixSeconds(d.Updated), d.Name)
		}
	}
	if p, ok := c.eng.Store.(interface{ Path() string }); ok {
		if fi, err := os.Stat(p.Path()); err == nil {
			ch <- prometheus.MustNewConstMetric(descStoreSize, prometheus.GaugeValue, float64(fi.Size()))
		}
	}
	now := time.Now()
	for _, p := range c.eng.Plan.Pipes {
		if len(p.Inputs) == 0 {
			continue
		}
		st, err := c.eng.Store.PipeState(ctx, p.ID)
		if err != nil {
			continue
		}
		last, ok := lastOffsets(st.Since, p.Inputs)
		if !ok {
			continue
		}
		for _, ds := range p.Inputs {
			info, found := byName[ds]
			if !found || info.Versions == 0 {
				ch <- prometheus.MustNewConstMetric(descLagVersions, prometheus.GaugeValue, 0, p.ID, ds)
				ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, 0, p.ID, ds)
				continue
			}
			from := uint64(0)
			lag := info.LastOffset + 1
			if off, ok := last[ds]; ok {
				from = off + 1
				lag = 0
				if info.LastOffset > off {
					lag = info.LastOffset - off
				}
			}
			ch <- prometheus.MustNewConstMetric(descLagVersions, prometheus.GaugeValue, float64(lag), p.ID, ds)
			age := 0.0
			if lag > 0 {
				c.eng.Store.Scan(ctx, ds, engine.ScanOptions{From: from, Limit: 1}, func(r engine.Record) error {
					age = max(0, now.Sub(time.UnixMicro(r.TS)).Seconds())
					return nil
				})
			}
			ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, age, p.ID, ds)
		}
	}
}

// lastOffsets decodes a dataset-reading pipe's token into the last offset
// examined per input dataset: a plain offset (one input) or a JSON object
// of offsets (merge_datasets, union_datasets). "" means nothing read. ok
// is false for a token of another form.
func lastOffsets(since string, inputs []string) (map[string]uint64, bool) {
	out := map[string]uint64{}
	if since == "" {
		return out, true
	}
	if n, err := strconv.ParseUint(since, 10, 64); err == nil {
		if len(inputs) != 1 {
			return nil, false
		}
		out[inputs[0]] = n
		return out, true
	}
	if err := json.Unmarshal([]byte(since), &out); err != nil {
		return nil, false
	}
	return out, true
}

// cachedCollector reuses its inner collector's samples for ttl, so that
// scrapes more frequent than ttl do not pay for collecting again.
type cachedCollector struct {
	inner prometheus.Collector
	ttl   time.Duration

	mu      sync.Mutex
	at      time.Time
	samples []prometheus.Metric
}

// Describe implements prometheus.Collector.
func (c *cachedCollector) Describe(ch chan<- *prometheus.Desc) { c.inner.Describe(ch) }

// Collect implements prometheus.Collector.
func (c *cachedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.samples == nil || time.Since(c.at) >= c.ttl {
		inner := make(chan prometheus.Metric, 64)
		go func() {
			c.inner.Collect(inner)
			close(inner)
		}()
		c.samples = c.samples[:0]
		for m := range inner {
			c.samples = append(c.samples, m)
		}
		c.at = time.Now()
	}
	for _, m := range c.samples {
		ch <- m
	}
}
