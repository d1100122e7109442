"""The four CRM services."""
