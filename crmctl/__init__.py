"""``crm``: the operator's command line. It talks to the services' REST APIs and to Kafka only."""
