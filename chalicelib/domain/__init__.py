"""Pure model of plans, executors and their states; imports only the standard library."""
