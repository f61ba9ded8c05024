"""What every layer uses: the error types with their exit codes, and how a secret may be shown."""
