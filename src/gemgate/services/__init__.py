"""What the CLI, the admin API and the admin page share: keys, credentials, usage, quotas."""
