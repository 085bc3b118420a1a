"""Local mode: moto for DynamoDB, APScheduler for the scheduler, the Chalice local server."""
