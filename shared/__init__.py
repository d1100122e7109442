"""Shared platform package of the headless CRM: settings, events, bus, database and API pieces."""
