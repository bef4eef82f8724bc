"""Attribution methods: each a plain function of (f, x, baseline) with keyword-only settings."""
