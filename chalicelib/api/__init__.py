"""The HAL JSON API: rendering, error mapping and the routes."""
