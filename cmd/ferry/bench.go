package main

import "context"

func (c *cli) cmdBench(ctx context.Context, args []string) int {
	c.errorf("bench: not built yet")
	return exitUsage
}
