"""hypoderm: a decision aid for hypopigmented skin diseases (not a medical device)."""

__version__ = "0.1.0"
