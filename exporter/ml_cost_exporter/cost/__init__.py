"""The cost model: prices, budget periods and the accrual ledger. Pure; the clock is passed in."""
