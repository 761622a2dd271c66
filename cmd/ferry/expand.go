package main

import "context"

func (c *cli) cmdExpand(ctx context.Context, args []string) int {
	c.errorf("not built yet")
	return exitUsage
}
