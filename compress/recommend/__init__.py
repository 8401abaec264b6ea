"""Recommendation: two-tower retrieval over an interaction log (``task = "recommend"``)."""
