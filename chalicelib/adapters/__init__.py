"""Adapters: the only code importing boto3, PynamoDB, APScheduler, libcloud, paramiko, requests."""
