package strftime

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	at := time.Date(2024, 2, 5, 13, 4, 9, 123456789, time.UTC)
	oslo := time.FixedZone("CET", 3600)
	for _, c := range []struct {
		t            time.Time
		format, want string
	}{
		{at, "%Y-%m-%dT%H:%M:%S.%f", "2024-02-05T13:04:09.123456"},
		{at, "%y %j %I%p %a %A %b %B", "24 036 01PM Mon Monday Feb February"},
		{at, "%z %Z %s %% %Q %", "+0000 UTC 1707138249 % %Q %"},
		{at.Add(-13 * time.Hour), "%I %p", "12 AM"},
		{at.In(oslo), "%H %z %Z", "14 +0100 CET"},
	} {
		if got := Format(c.t, c.format); got != c.want {
			t.Errorf("Format(%v, %q) = %q, want %q", c.t, c.format, got, c.want)
		}
	}
}
