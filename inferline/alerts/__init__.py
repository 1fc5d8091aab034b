"""Alert rules per project, evaluated from the rollups, and the webhooks that carry their
transitions (and new feedback) to a project's endpoints. See docs/alerts.md."""
