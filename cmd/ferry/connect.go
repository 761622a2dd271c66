package main

import "context"

func (c *cli) cmdConnect(ctx context.Context, args []string) int {
	c.errorf("not built yet")
	return exitUsage
}

func (c *cli) cmdConnectors(ctx context.Context, args []string) int {
	c.errorf("not built yet")
	return exitUsage
}

func (c *cli) cmdDisconnect(ctx context.Context, args []string) int {
	c.errorf("not built yet")
	return exitUsage
}
