package app

// Feature areas wire themselves here, one function each (monitor, jobs, batch), called by open() after the
// catalog and deployments exist. Each returns a closer run by Close in reverse order.

func (a *App) openMonitor() error { return nil }

func (a *App) openJobs() error { return nil }

func (a *App) openBatch() error { return nil }
