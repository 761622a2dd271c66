package httpapi

// BudgetPeak returns the most request body bytes the API held at once.
func BudgetPeak(a *API) int64 {
	a.budget.mu.Lock()
	defer a.budget.mu.Unlock()
	return a.budget.peak
}

// DiffJSON exposes diffJSON as "op path old new" lines.
func DiffJSON(before, after []byte) []string {
	var out []string
	for _, c := range diffJSON(before, after) {
		out = append(out, c.Op+" "+c.Path+" "+c.Old+" "+c.New)
	}
	return out
}
