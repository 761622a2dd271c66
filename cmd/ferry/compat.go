package main

import "context"

func (c *cli) cmdCompat(ctx context.Context, args []string) int {
	c.errorf("not built yet")
	return exitUsage
}
