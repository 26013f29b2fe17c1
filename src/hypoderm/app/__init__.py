"""`hypoderm serve`: the mobile diagnosis web app (static/) and its JSON API (server.py)."""
