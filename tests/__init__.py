"""The lenetish test suite."""
