"""Lab and analyzer results: the durable store, the prediction log they are matched against, the
bias filter.
"""
